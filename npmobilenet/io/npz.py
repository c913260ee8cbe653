""".npz files, NumPy's own format: :func:`save_npz` and :func:`load_npz`.

An ``.npz`` file is a zip archive with one ``<name>.npy`` member per array. Both functions
refuse pickled objects (``allow_pickle=False``), so an ``.npz`` file, unlike a pickle, can
only ever hold numbers.
"""

import zipfile

import numpy as np

from ..errors import WeightsError
from .atomic import atomic_write
from .checks import checked_state_dict, existing_file
from .sniff import describe_start, sniff

__all__ = ["load_npz", "save_npz"]


def save_npz(state_dict, path):
    """Write ``state_dict`` (``{name: array}``) to an ``.npz`` archive at ``path``, atomically.

    The file is what ``np.savez`` writes (one ``<name>.npy`` member per array, uncompressed),
    written at exactly ``path`` (``np.savez`` would add ``.npz`` to a name without it), with
    no pickled objects. Raises :class:`~npmobilenet.errors.WeightsError` for a value that is
    not a numeric or boolean array, ``OSError`` when the file cannot be written; on any error
    the file at ``path`` is left as it was.
    """
    arrays = checked_state_dict(state_dict, "save_npz")
    with atomic_write(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


# What np.load raises for a file that is not an .npz archive, is damaged, or holds pickles.
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _npz_error(path, error):
    return WeightsError(
        f"{path}: expected an .npz archive of numeric arrays, found {describe_start(path)} "
        f"({type(error).__name__}: {error})"
    )


def load_npz(path):
    """Read an ``.npz`` archive into ``{name: array}`` (``np.load`` with ``allow_pickle=False``).

    Raises :class:`~npmobilenet.errors.WeightsError` naming the path when the file is missing,
    is not an ``.npz`` archive, is damaged, or holds pickled objects.
    """
    path = existing_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as error:
        raise _npz_error(path, error) from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise WeightsError(f"{path}: expected an .npz archive of named arrays, found a single .npy array")
    try:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except _NPZ_ERRORS as error:
        raise _npz_error(path, error) from error
    not_arrays = [name for name, value in arrays.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        hint = " (a PyTorch checkpoint: read it with load_torch_checkpoint)" if sniff(path) == "torch-zip" else ""
        raise WeightsError(
            f"{path}: expected an .npz archive of .npy arrays, found a zip archive with other "
            f"members: {', '.join(not_arrays[:3])}{hint}"
        )
    return arrays
