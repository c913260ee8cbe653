"""Reading a weights file of either format: :func:`load_state_dict_file`.

The file's content picks the reader (:mod:`npmobilenet.io.sniff`), so a checkpoint named
``.npz`` or an ``.npz`` named ``.pth`` is still read; the suffix decides only when the
content is neither format, to choose whose error message explains the problem.
"""

from .checks import existing_file
from .npz import load_npz
from .sniff import sniff
from .torch_load import load_torch_checkpoint

__all__ = ["load_state_dict_file"]


def load_state_dict_file(path):
    """Read weights from a torch checkpoint (``.pth``, ``.pt``, any name) or an ``.npz`` file.

    The content decides: a zip archive with ``<name>/data.pkl`` or a legacy torch pickle is
    read with :func:`load_torch_checkpoint`, a zip of ``.npy`` members with :func:`load_npz`.
    When the content is neither, the suffix picks the reader (``.npz``: ``load_npz``; anything
    else: ``load_torch_checkpoint``), whose WeightsError says what was expected and found.
    """
    path = existing_file(path)
    kind = sniff(path)
    if kind == "npz" or (kind is None and path.suffix.lower() == ".npz"):
        return load_npz(path)
    return load_torch_checkpoint(path)
