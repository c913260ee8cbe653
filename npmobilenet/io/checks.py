"""The checks the readers and writers share: the file to read exists, the state dict to write
holds arrays.

Both raise :class:`~npmobilenet.errors.WeightsError` saying what was expected and what was
found, so every reader and every writer words the same mistake the same way.
"""

from pathlib import Path

import numpy as np

from ..errors import WeightsError

__all__ = ["checked_state_dict", "existing_file", "native"]


def existing_file(path):
    """``path`` as a Path, or a WeightsError when there is no such file."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsError(f"weights file {str(path)!r} {what} (looked at {path.absolute()})")
    return path


def checked_state_dict(state_dict, what, dtypes=None):
    """``{name: array}`` from a mapping of names to arrays, or a WeightsError saying what is wrong."""
    if not hasattr(state_dict, "items"):
        raise WeightsError(f"{what}: expected a dict of arrays (a state dict), found {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise WeightsError(f"{what}: expected string keys, found {name!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biufc" or (dtypes is not None and native(array.dtype) not in dtypes):
            allowed = "numbers or booleans" if dtypes is None else ", ".join(sorted(str(d) for d in dtypes))
            raise WeightsError(f"{what}: {name!r} has dtype {array.dtype}; expected {allowed}")
        arrays[name] = array
    return arrays


def native(dtype):
    """``dtype`` in this machine's byte order (``>f4`` and ``<f4`` are both float32)."""
    return dtype.newbyteorder("=")
