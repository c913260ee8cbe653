"""The checks the readers and writers share: the file to read exists, the state dict to write
holds arrays of a dtype the format can store.

They raise :class:`~npmobilenet.errors.WeightsError` saying what was expected and what was
found, so every reader and every writer words the same mistake the same way; :func:`item_path`
names where in a nested structure (``optimizer.state.0.momentum_buffer``) a value sits.
"""

from pathlib import Path

import numpy as np

from ..errors import WeightsError

__all__ = ["checked_dtype", "checked_state_dict", "existing_file", "item_path", "native"]


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
        arrays[name] = checked_dtype(np.asarray(value), what, name, dtypes)
    return arrays


def checked_dtype(array, what, name, dtypes=None):
    """``array``, or a WeightsError when its dtype is not a number or boolean (or not in ``dtypes``)."""
    if array.dtype.kind not in "biufc" or (dtypes is not None and native(array.dtype) not in dtypes):
        allowed = "numbers or booleans" if dtypes is None else ", ".join(sorted(str(d) for d in dtypes))
        raise WeightsError(f"{what}: {name!r} has dtype {array.dtype}; expected {allowed}")
    return array


def item_path(parent, key):
    """Where an item sits in a nested structure, for error messages: ``item_path("optimizer.state", 0)``
    is ``"optimizer.state.0"``; the top level is ``""``."""
    return f"{parent}.{key}" if parent else str(key)


def native(dtype):
    """``dtype`` in this machine's byte order (``>f4`` and ``<f4`` are both float32)."""
    return dtype.newbyteorder("=")
