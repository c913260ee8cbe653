"""Writing PyTorch files without PyTorch: :func:`save_torch_file` and :func:`save_torch_checkpoint`.

:func:`save_torch_file` writes a whole object (a training checkpoint: the model's state dict,
the optimizer's, the epoch, the history ...), :func:`save_torch_checkpoint` a state dict. The
file is torch's zip format, laid out as :mod:`npmobilenet.io.torch_load` describes it, so that
``torch.load(weights_only=True)`` reads it back::

    archive/data.pkl            the pickle: the object, each array a _rebuild_tensor_v2(...) call
    archive/.format_version     "1"
    archive/.storage_alignment  "64"
    archive/byteorder           "little"
    archive/data/0, 1, ...      the raw bytes of array 0, 1, ..., little-endian, C order
    archive/version             "3\\n"

Every record is stored uncompressed, with its data starting at a multiple of 64 bytes, as
torch aligns it (so ``torch.load(mmap=True)`` can map it).

The pickle
----------

A pickle is a small program for a stack machine: each *opcode* (one byte, with its argument)
pushes a value or builds one from the values on the stack, and ``STOP`` returns the top of the
stack. It is written here opcode by opcode (protocol 2, as torch writes it): Python's own
Pickler would have to import torch to name torch's functions. The opcodes are the constants of
the ``pickle`` module; each value becomes

=========================  ========================================================================
value                      opcodes
=========================  ========================================================================
None, True, False          NONE, NEWTRUE, NEWFALSE (``True`` is not the int 1: bool and int stay apart)
int                        BININT1 (1 byte), BININT2 (2 bytes), BININT (4 bytes, signed), or LONG1:
                           a length byte, then that many bytes, two's complement, all little-endian
float                      BINFLOAT: the 8 bytes of an IEEE 754 double, *big-endian* (the one
                           big-endian number in a pickle), so every float comes back exactly
str                        BINUNICODE: a 4-byte little-endian length, then the UTF-8 bytes
dict                       EMPTY_DICT, then MARK key value key value ... SETITEMS (in insertion order)
OrderedDict                GLOBAL ``collections OrderedDict``, EMPTY_TUPLE, REDUCE (call it with no
                           arguments), then MARK ... SETITEMS as for a dict
list                       EMPTY_LIST, then MARK item item ... APPENDS
tuple                      MARK item item ... TUPLE (EMPTY_TUPLE when empty)
array                      GLOBAL ``torch._utils _rebuild_tensor_v2``, a tuple of its arguments
                           (storage, 0, shape, strides, False, OrderedDict()), REDUCE; the storage is
                           the tuple ``('storage', torch.FloatStorage, '0', 'cpu', numel)`` then
                           BINPERSID: "the object whose persistent id this is", the record data/0
=========================  ========================================================================

The whole pickle is PROTO 2, the object, STOP. ``save_torch_file({"epoch": 3, "lr": 0.5}, path)``
writes (``unzip -p path archive/data.pkl > data.pkl; python -m pickletools data.pkl``)::

    0: \\x80 PROTO      2
    2: }    EMPTY_DICT
    3: (    MARK
    4: X        BINUNICODE 'epoch'
   14: K        BININT1    3
   16: X        BINUNICODE 'lr'
   23: G        BINFLOAT   0.5
   32: u        SETITEMS   (MARK at 3)
   33: .    STOP

Python's own Pickler also *memoizes* (BINPUT, BINGET: a value met twice is written once and
fetched again); that only saves space, so it is not done here: an array met twice is written
twice, each array in its own storage.
"""

import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from ..errors import WeightsError
from .atomic import atomic_write
from .checks import checked_dtype, checked_state_dict, item_path, native
from .torch_types import NUMPY_TO_STORAGE

__all__ = ["save_torch_checkpoint", "save_torch_file"]

ZIP_ARCHIVE_NAME = "archive"
ZIP_ALIGNMENT = 64  # bytes; torch aligns each record's data so it can be memory-mapped
MAX_INT_BITS = 8 * 255 - 1  # LONG1 holds 255 bytes; torch.load(weights_only=True) reads no LONG4
SUPPORTED = "a dict, OrderedDict, list, tuple, str, int, float, bool, None or NumPy array"


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


def _op_float(value):
    """Push a float (BINFLOAT: 8 bytes, an IEEE 754 double, big-endian)."""
    return pickle.BINFLOAT + struct.pack(">d", value)


def _op_marked(items, opcode):
    """``MARK item item ... opcode``: add the items to the container on the stack (nothing when empty)."""
    return pickle.MARK + b"".join(items) + opcode if items else b""


def _python_scalar(value):
    """A NumPy scalar as the Python value it holds, exactly (``np.float32(0.1)`` becomes the float
    ``0.10000000149011612``, ``np.int64(3)`` the int 3); anything else unchanged."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating) and value.dtype.itemsize <= 8:  # not long double: float would round it
        return float(value)
    return value


def _op_value(value, where, arrays, enclosing=frozenset()):
    """The opcodes that push ``value``, any nesting of the types :func:`save_torch_file` takes.

    ``where`` names the value in errors (``"optimizer.state.0.momentum_buffer"``). Each array
    met is appended to ``arrays`` and its storage named by its position there. ``enclosing``
    holds the ids of the containers ``value`` sits in, so that one holding itself is refused
    instead of being written forever.
    """
    value = _python_scalar(value)
    name = where or "(top level)"
    if value is None:
        return pickle.NONE
    if isinstance(value, bool):  # before int: True is an int too
        return pickle.NEWTRUE if value else pickle.NEWFALSE
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise WeightsError(
                f"save_torch_file: {name!r} is an int of {value.bit_length()} bits; "
                f"torch.load(weights_only=True) reads ints of at most {MAX_INT_BITS} bits"
            )
        return _op_int(value)
    if isinstance(value, float):
        return _op_float(value)
    if isinstance(value, str):
        try:
            return _op_str(value)
        except UnicodeEncodeError:
            raise WeightsError(
                f"save_torch_file: {name!r} is a str that UTF-8 cannot encode (it holds a lone surrogate)"
            ) from None
    if isinstance(value, np.ndarray):
        checked_dtype(value, "save_torch_file", name, dtypes=NUMPY_TO_STORAGE)
        # little-endian and C-contiguous (np.ascontiguousarray would turn a 0-d array into 1-d)
        arrays.append(np.asarray(value, dtype=value.dtype.newbyteorder("<"), order="C"))
        return _pickle_tensor(arrays[-1], str(len(arrays) - 1))
    if type(value) not in (dict, OrderedDict, list, tuple):  # not subclasses: a Counter would come back a dict
        raise WeightsError(
            f"save_torch_file: {name!r} has type {type(value).__name__} ({value!r:.60}); expected {SUPPORTED} "
            f"(what torch.load(weights_only=True) and load_torch_file read back): convert it first"
        )
    if id(value) in enclosing:
        raise WeightsError(f"save_torch_file: {name!r} contains itself; a file can hold only a tree of values")
    enclosing = enclosing | {id(value)}
    if isinstance(value, dict):
        items = [
            _op_key(key, name) + _op_value(item, item_path(where, key), arrays, enclosing)
            for key, item in value.items()
        ]
        if type(value) is dict:
            return pickle.EMPTY_DICT + _op_marked(items, pickle.SETITEMS)
        new_ordered_dict = _op_call(_op_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE)
        return new_ordered_dict + _op_marked(items, pickle.SETITEMS)
    items = [_op_value(item, item_path(where, i), arrays, enclosing) for i, item in enumerate(value)]
    if isinstance(value, list):
        return pickle.EMPTY_LIST + _op_marked(items, pickle.APPENDS)
    return _op_tuple(items) if items else pickle.EMPTY_TUPLE


def _op_key(key, name):
    """Push a dict key: a str or an int (as a value, so that ``0`` stays the int 0, not ``"0"``)."""
    if not isinstance(key, (str, int, np.integer)):
        raise WeightsError(
            f"save_torch_file: {name!r} has the key {key!r} ({type(key).__name__}); expected str or int keys"
        )
    return _op_value(key, f"a key of {name}", [])


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


def save_torch_file(obj, path):
    """Write ``obj`` to ``path`` in torch's zip format, atomically: a whole training checkpoint.

    ``obj`` is any nesting of dicts (str or int keys; a plain dict is written as one, an
    OrderedDict as an OrderedDict; insertion order is kept), lists, tuples, str, int (up to
    2039 bits, what torch's safe loader reads), float, bool, None and NumPy arrays of any dtype
    torch has a storage for (float16/32/64, int8/16/32/64, uint8, bool, complex64/128; any byte
    order and memory layout; a 0-d array stays a 0-d tensor). NumPy scalars are written as the
    Python int, float or bool they hold. Each array gets its own storage, ``data/0``,
    ``data/1``, ... in the order they are met.

    ``torch.load(path, weights_only=True)`` reads it back with tensors where the arrays were and
    the same Python values everywhere else; :func:`~npmobilenet.io.load_torch_file` reads it
    back exactly, arrays and all; :func:`~npmobilenet.io.load_torch_checkpoint` finds the
    model's state dict under ``"model"`` (or ``"state_dict"``, ``"model_state_dict"``).

    Anything else (a set, a bytes, a Counter or defaultdict, an object, an array of strings or
    of uint16, a float key, a list inside itself) raises
    :class:`~npmobilenet.errors.WeightsError` naming where it sits, as
    ``'optimizer.state.0.momentum_buffer'``; everything is checked before the file is opened,
    so on any error (``OSError`` too) the file at ``path`` is left as it was.
    """
    arrays = []
    try:
        data_pkl = pickle.PROTO + b"\x02" + _op_value(obj, "", arrays) + pickle.STOP
    except RecursionError:
        raise WeightsError("save_torch_file: the object is nested too deeply to write (a thousand levels)") from None
    records = {
        "data.pkl": data_pkl,
        ".format_version": b"1",
        ".storage_alignment": str(ZIP_ALIGNMENT).encode("ascii"),
        "byteorder": b"little",
    }
    records.update({f"data/{i}": array.tobytes() for i, array in enumerate(arrays)})
    records["version"] = b"3\n"
    with atomic_write(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            _write_aligned_record(archive, file, f"{ZIP_ARCHIVE_NAME}/{name}", data)


def save_torch_checkpoint(state_dict, path):
    """Write ``state_dict`` (``{name: array}``) as a zip-format torch checkpoint, atomically.

    ``torch.load(path, weights_only=True)`` reads it back as an ``OrderedDict`` of tensors with
    the same names, dtypes and shapes (a 0-d array stays a 0-d tensor), and so does
    :func:`load_torch_checkpoint`. It is :func:`save_torch_file` of an ``OrderedDict`` of the
    arrays, after checking that ``state_dict`` is one: string keys, values that are arrays (or
    numbers) of a dtype torch has a storage for. Raises
    :class:`~npmobilenet.errors.WeightsError` otherwise (object, string, uint16 ...) and
    ``OSError`` when the file cannot be written; on any error the file at ``path`` is left as
    it was.
    """
    arrays = checked_state_dict(state_dict, "save_torch_checkpoint", dtypes=NUMPY_TO_STORAGE)
    save_torch_file(OrderedDict(arrays), path)
