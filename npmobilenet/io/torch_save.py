"""Writing PyTorch checkpoints without PyTorch: :func:`save_torch_checkpoint`.

The file is torch's zip format, laid out as :mod:`npmobilenet.io.torch_load` describes it, so
that ``torch.load(weights_only=True)`` reads it back::

    archive/data.pkl            an OrderedDict of _rebuild_tensor_v2(...) calls
    archive/.format_version     "1"
    archive/.storage_alignment  "64"
    archive/byteorder           "little"
    archive/data/0, 1, ...      the raw bytes of array 0, 1, ..., little-endian, C order
    archive/version             "3\\n"

Every record is stored uncompressed, with its data starting at a multiple of 64 bytes, as
torch aligns it (so ``torch.load(mmap=True)`` can map it).

The pickle is written opcode by opcode (protocol 2, as torch writes it): Python's own Pickler
would have to import torch to name torch's functions. The opcodes are the constants of the
``pickle`` module; ``python -m pickletools FILE`` shows them one per line.
"""

import pickle
import struct
import zipfile

import numpy as np

from .atomic import atomic_write
from .checks import checked_state_dict, native
from .torch_types import NUMPY_TO_STORAGE

__all__ = ["save_torch_checkpoint"]

ZIP_ARCHIVE_NAME = "archive"
ZIP_ALIGNMENT = 64  # bytes; torch aligns each record's data so it can be memory-mapped


def _op_global(module, name):
    """Push the global ``module.name`` (GLOBAL opcode)."""
    return pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")


def _op_int(value):
    """Push an int, in the shortest opcode that holds it."""
    if 0 <= value < 1 << 8:
        return pickle.BININT1 + struct.pack("<B", value)
    if 0 <= value < 1 << 16:
        return pickle.BININT2 + struct.pack("<H", value)
    if -(1 << 31) <= value < 1 << 31:
        return pickle.BININT + struct.pack("<i", value)
    data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return pickle.LONG1 + struct.pack("<B", len(data)) + data


def _op_str(text):
    data = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _op_tuple(items):
    """Push a tuple of the already-encoded ``items`` (MARK item item ... TUPLE)."""
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _op_call(function, args):
    """Push ``function(*args)`` (REDUCE), both already encoded."""
    return function + args + pickle.REDUCE


def _pickle_tensor(array, storage_key):
    """``_rebuild_tensor_v2(storage, 0, shape, strides, False, OrderedDict())`` for a C-contiguous array."""
    storage = _op_tuple([
        _op_str("storage"),
        _op_global("torch", NUMPY_TO_STORAGE[native(array.dtype)]),
        _op_str(storage_key),
        _op_str("cpu"),
        _op_int(array.size),
    ]) + pickle.BINPERSID
    args = _op_tuple([
        storage,
        _op_int(0),
        _op_tuple([_op_int(n) for n in array.shape]),
        _op_tuple([_op_int(s) for s in _contiguous_strides(array.shape)]),
        pickle.NEWFALSE,
        _op_call(_op_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE),
    ])
    return _op_call(_op_global("torch._utils", "_rebuild_tensor_v2"), args)


def _pickle_state_dict(arrays):
    """The ``data.pkl`` of a state dict: an OrderedDict whose tensor ``i`` uses storage ``"i"``."""
    items = b"".join(_op_str(name) + _pickle_tensor(array, str(i)) for i, (name, array) in enumerate(arrays.items()))
    ordered_dict = _op_call(_op_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE)
    return pickle.PROTO + b"\x02" + ordered_dict + pickle.MARK + items + pickle.SETITEMS + pickle.STOP


def _contiguous_strides(shape):
    """Strides in elements of a C-contiguous tensor, as torch computes them."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _write_aligned_record(archive, file, name, data):
    """Add an uncompressed record whose data starts at a multiple of ZIP_ALIGNMENT bytes.

    As torch does, the padding goes in an extra field with id ``FB`` in the local header
    (30 bytes + the name + the 4-byte extra field header + the padding).
    """
    data_start = file.tell() + 30 + len(name.encode("utf-8")) + 4
    padding = -data_start % ZIP_ALIGNMENT
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
    archive.writestr(info, data)


def save_torch_checkpoint(state_dict, path):
    """Write ``state_dict`` (``{name: array}``) as a zip-format torch checkpoint, atomically.

    ``torch.load(path, weights_only=True)`` reads it back as an ``OrderedDict`` of tensors with
    the same names, dtypes and shapes (a 0-d array stays a 0-d tensor), and so does
    :func:`load_torch_checkpoint`. The layout is torch's: ``archive/data.pkl``,
    ``archive/data/<i>``, ``archive/byteorder`` ("little"), ``archive/version`` and the
    alignment records, each record's data aligned to 64 bytes so ``torch.load(mmap=True)``
    works too. Raises :class:`~npmobilenet.errors.WeightsError` for a value whose dtype torch
    has no storage for (object, string, uint16 ...) and ``OSError`` when the file cannot be
    written; on any error the file at ``path`` is left as it was.
    """
    arrays = checked_state_dict(state_dict, "save_torch_checkpoint", dtypes=NUMPY_TO_STORAGE)
    # little-endian and C-contiguous (np.ascontiguousarray would turn a 0-d array into 1-d)
    arrays = {name: np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C") for name, array in arrays.items()}
    records = {
        "data.pkl": _pickle_state_dict(arrays),
        ".format_version": b"1",
        ".storage_alignment": str(ZIP_ALIGNMENT).encode("ascii"),
        "byteorder": b"little",
    }
    records.update({f"data/{i}": array.tobytes() for i, array in enumerate(arrays.values())})
    records["version"] = b"3\n"
    with atomic_write(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            _write_aligned_record(archive, file, f"{ZIP_ARCHIVE_NAME}/{name}", data)
