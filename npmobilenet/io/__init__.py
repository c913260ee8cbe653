"""Weights files without PyTorch: one job a module, as ``torch.serialization`` and ``torch.hub``.

* :mod:`~npmobilenet.io.torch_load`: :func:`load_torch_checkpoint` (a state dict) and
  :func:`load_torch_file` (the whole object: a training checkpoint, its tensors as arrays)
  read both formats ``torch.save`` writes, through an allow-list that refuses any pickled
  code (the module docstring explains the formats);
* :mod:`~npmobilenet.io.torch_save`: :func:`save_torch_checkpoint` (a state dict) and
  :func:`save_torch_file` (any nesting of dicts, lists, tuples, numbers, strings and arrays:
  a training checkpoint) write the zip format, which ``torch.load(weights_only=True)`` reads
  (the module docstring explains the pickle, opcode by opcode);
* :mod:`~npmobilenet.io.torch_types`: torch's storage types and dtypes, and NumPy's for each;
* :mod:`~npmobilenet.io.npz`: :func:`save_npz` and :func:`load_npz`, NumPy's own format;
* :mod:`~npmobilenet.io.any_format`: :func:`load_state_dict_file` reads either format,
  the content choosing the reader;
* :mod:`~npmobilenet.io.sniff` and :mod:`~npmobilenet.io.checks`: what a file holds, and
  the checks every reader and writer makes;
* :mod:`~npmobilenet.io.atomic`: :func:`atomic_write`, through which every file is written;
* :mod:`~npmobilenet.io.hub`: the download cache (:func:`cache_dir`,
  :func:`cached_weights_path`, :func:`download_weights`).

The registry of published weights, and the order in which weights are looked for, sit beside
the model, in :mod:`npmobilenet.models.weights`. Only the standard library and NumPy are used
here: this package never imports torch.
"""

from .any_format import load_state_dict_file
from .atomic import atomic_write
from .hub import cache_dir, cached_weights_path, download_weights
from .npz import load_npz, save_npz
from .torch_load import load_class_names, load_torch_checkpoint, load_torch_file
from .torch_save import save_torch_checkpoint, save_torch_file

__all__ = [
    "atomic_write", "cache_dir", "cached_weights_path", "download_weights", "load_npz",
    "load_class_names", "load_state_dict_file", "load_torch_checkpoint", "load_torch_file", "save_npz",
    "save_torch_checkpoint", "save_torch_file",
]
