"""Reading PyTorch files without PyTorch, safely: :func:`load_torch_checkpoint` (a state dict)
and :func:`load_torch_file` (the whole object: a training checkpoint with the optimizer's state,
the epoch, the history ...).

What ``torch.save`` writes
--------------------------

A PyTorch checkpoint is a pickle in which every tensor is a small *recipe* (which storage,
which offset, which shape, which strides) and the numbers themselves, the *storages*, are
kept outside the pickle as raw bytes. ``torch.save`` has used two layouts for this.

**The zip format** (the default since PyTorch 1.6). The file is an uncompressed zip archive
whose records all sit in one folder, named after the file (``mobilenet_v2/``) or
``archive/``::

    archive/data.pkl            the pickle: an OrderedDict of tensor recipes
    archive/data/0              raw bytes of storage "0", then "1", "2", ...
    archive/byteorder           "little" or "big": the byte order of those raw bytes
    archive/version             the format version, "3\\n"
    archive/.format_version     "1"
    archive/.storage_alignment  "64": each record's data starts at a multiple of 64 bytes

In the pickle a storage appears as a *persistent id*, the tuple
``("storage", torch.FloatStorage, "0", "cpu", numel)``, which names the record
``archive/data/0`` holding ``numel`` float32 numbers. A tensor is the call
``torch._utils._rebuild_tensor_v2(storage, offset, shape, strides, requires_grad, hooks)``:
element ``[i, j]`` of the tensor is element ``offset + i * strides[0] + j * strides[1]`` of
the storage, so a transposed or sliced tensor shares its storage with the original.

**The legacy format** (``_use_new_zipfile_serialization=False``, and every checkpoint from
before PyTorch 1.6, such as torchvision's ``mobilenet_v2-b0353104.pth``) is several pickles
one after the other in a single file, then the raw storages::

    pickle 1   the magic number 0x1950a86a20f9469cfc6c
    pickle 2   the protocol version, 1001
    pickle 3   system info: {"protocol_version": 1001, "little_endian": True, "type_sizes": ...}
    pickle 4   the object itself, with persistent ids
               ("storage", torch.FloatStorage, key, location, numel, None)
    pickle 5   the list of storage keys, in the order their bytes follow
    then, for each key: numel as a little-endian int64, then numel elements, little-endian

Reading safely
--------------

Unpickling runs whatever functions a pickle names, so a checkpoint from the internet could
run ``os.system("...")``. Like ``torch.load(weights_only=True)``, the reader here uses an
allow-list: :class:`pickle.Unpickler` asks ``find_class`` for every global the pickle names,
and ours answers only for ``collections.OrderedDict``, the tensor rebuild functions
(``torch._utils._rebuild_tensor``, ``_rebuild_tensor_v2``, ``_rebuild_tensor_v3``,
``_rebuild_parameter``, ``_rebuild_parameter_with_state``), the storage types
(``torch.FloatStorage``, ``torch.LongStorage``, ..., ``torch.storage.UntypedStorage``) and
the dtypes ``torch.uint16`` etc. that ``_rebuild_tensor_v3`` takes. For each it returns a
small NumPy-side stand-in of our own, never torch's. Any other global raises
:class:`~npmobilenet.errors.UnsafeCheckpointError` the moment it is named, before it could
be called. The stand-ins only record what the pickle asks for (:class:`_TensorRef`); the
arrays are made afterwards, with every offset and stride checked against the storage's size.
Everything else a checkpoint holds (dicts, lists, tuples, str, int, float, bool, None) is
built by opcodes of its own (EMPTY_DICT, SETITEMS, BINFLOAT, ...: see
:mod:`npmobilenet.io.torch_save`) and needs no global at all. In protocol 2, which torch writes, a set, bytes or a complex number
needs one (``builtins.set``, ``_codecs.encode``, ``builtins.complex``), so a file holding them
is refused.

Only the standard library and NumPy are used: this module never imports torch. The writer,
:mod:`npmobilenet.io.torch_save`, writes the zip format described here.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from ..errors import UnsafeCheckpointError, WeightsError
from .checks import existing_file, item_path
from .sniff import describe_start, sniff, zip_folder
from .torch_types import STORAGE_MODULES, STORAGE_TYPES, TORCH_DTYPES

__all__ = ["load_torch_checkpoint", "load_torch_file"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # {"state_dict": sd, "epoch": 3, ...}
MAX_WRAPPING = 3  # {"model": {"state_dict": sd}} is two levels
DATA_PARALLEL_PREFIX = "module."


# ============================================================================================
# The stand-ins for torch's types and functions, and the allow-list
# ============================================================================================

# The stand-ins are NamedTuples: immutable, so a pickle cannot change them (pickle's BUILD
# opcode can set attributes of objects it has been given, but not of a tuple).


class _TorchType(NamedTuple):
    """A storage type or dtype named in the pickle, such as ``torch.FloatStorage``."""

    name: str
    numpy_dtype: str | None  # None: NumPy has no such type (bfloat16, quantized, float8)
    itemsize: int


class _StorageRef(NamedTuple):
    """A storage named by a persistent id: ``numel`` elements of ``torch_type`` under ``key``."""

    key: str
    torch_type: _TorchType
    numel: int


class _TensorRef(NamedTuple):
    """What a rebuild function was asked for; :func:`_tensor_to_array` makes the array."""

    storage: _StorageRef
    offset: int  # in elements of torch_type
    shape: tuple
    strides: tuple  # in elements, not bytes
    torch_type: _TorchType  # the tensor's dtype (the storage's, except for _rebuild_tensor_v3)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_ref(storage, offset, shape, strides, torch_type):
    """Check the arguments a rebuild function got from the pickle, and record them."""
    if not isinstance(storage, _StorageRef):
        raise WeightsError(f"malformed tensor record: expected a storage, found {type(storage).__name__}")
    shape, strides = tuple(shape), tuple(strides)
    if not (_is_int(offset) and offset >= 0):
        raise WeightsError(f"malformed tensor record: expected a storage offset >= 0, found {offset!r}")
    if len(shape) != len(strides) or not all(_is_int(n) and n >= 0 for n in shape + strides):
        raise WeightsError(
            f"malformed tensor record: expected a shape and strides of non-negative integers "
            f"of the same length, found shape {shape!r} and strides {strides!r}"
        )
    return _TensorRef(storage, offset, shape, strides, torch_type)


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Stand-in for ``torch._utils._rebuild_tensor``."""
    return _tensor_ref(storage, storage_offset, size, stride, getattr(storage, "torch_type", None))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` (what ``torch.save`` writes for a tensor)."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v3``: bytes in an UntypedStorage, plus a dtype."""
    if not isinstance(dtype, _TorchType):
        raise WeightsError(f"malformed tensor record: expected a torch dtype, found {type(dtype).__name__}")
    return _tensor_ref(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """Stand-in for ``torch._utils._rebuild_parameter(_with_state)``: an ``nn.Parameter`` is its tensor."""
    if not isinstance(data, _TensorRef):
        raise WeightsError(f"malformed parameter record: expected a tensor, found {type(data).__name__}")
    return data


ALLOWED_FUNCTIONS = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
}


def _allowed_global(module, name):
    """The stand-in for the global ``module.name``, or None when it is not on the allow-list."""
    if f"{module}.{name}" in ALLOWED_FUNCTIONS:
        return ALLOWED_FUNCTIONS[f"{module}.{name}"]
    if module in STORAGE_MODULES and name in STORAGE_TYPES:
        return _TorchType(name, *STORAGE_TYPES[name])
    if module == "torch" and name in TORCH_DTYPES:
        return _TorchType(name, *TORCH_DTYPES[name])
    return None


# ============================================================================================
# Reading torch checkpoints
# ============================================================================================

# What unpickling damaged or hostile bytes can raise (besides our own WeightsError).
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError, TypeError,
    ValueError, OverflowError, RecursionError, UnicodeDecodeError,
)


class _CheckpointUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that knows only the allow-listed globals and torch's storages.

    ``storages`` collects every storage the pickle names, by key (the legacy format needs
    their types to read the raw bytes that follow the pickle). Its errors do not name the
    file: :func:`_unpickle` adds that.
    """

    def __init__(self, file):
        super().__init__(file, encoding="utf-8")  # as torch.load: Python 2 strings as UTF-8
        self.storages = {}

    def find_class(self, module, name):
        allowed = _allowed_global(module, name)
        if allowed is None:
            raise UnsafeCheckpointError(
                f"the checkpoint's pickle asks for the Python global "
                f"'{module}.{name}', which is not on the allow-list (tensor rebuild functions, "
                f"storage types, collections.OrderedDict); it was refused and nothing in the file "
                f"was run. A weights file should hold only tensors: if you trust this file, load "
                f"it with torch and save model.state_dict() instead"
            )
        return allowed

    def persistent_load(self, saved_id):
        """Turn ``("storage", type, key, location, numel[, view])`` into a :class:`_StorageRef`."""
        if not (isinstance(saved_id, tuple) and len(saved_id) in (5, 6) and saved_id[0] in ("storage", b"storage")):
            raise WeightsError(
                f"expected persistent ids ('storage', type, key, location, numel), "
                f"found {saved_id!r:.100}"
            )
        torch_type, key, numel = saved_id[1], saved_id[2], saved_id[4]
        if isinstance(key, bytes):
            key = key.decode("ascii")
        if not (isinstance(torch_type, _TorchType) and isinstance(key, str) and _is_int(numel) and numel >= 0):
            raise WeightsError(f"malformed storage record {saved_id!r:.100}")
        if len(saved_id) == 6 and saved_id[5] is not None:
            raise WeightsError(
                "this checkpoint uses storage views, written only by old versions of PyTorch, "
                "which this reader does not support; load it with torch and save it again"
            )
        storage = _StorageRef(key, torch_type, numel)
        self.storages.setdefault(key, storage)
        return storage


def _unpickle(file, source):
    """Unpickle one pickle from ``file`` with the allow-list; return ``(object, unpickler)``.

    Errors name ``source``, the file.
    """
    unpickler = _CheckpointUnpickler(file)
    try:
        return unpickler.load(), unpickler
    except WeightsError as error:  # from find_class, persistent_load or a rebuild function
        raise type(error)(f"{source}: {error}") from error
    except _UNPICKLING_ERRORS as error:
        raise WeightsError(
            f"{source}: the pickle in this checkpoint is damaged or truncated "
            f"({type(error).__name__}: {error})"
        ) from error


def _numpy_dtype(torch_type, source):
    """The NumPy dtype of a torch type, or a WeightsError for types NumPy does not have."""
    if torch_type.numpy_dtype is None:
        raise WeightsError(
            f"{source}: stored as torch.{torch_type.name}, a type NumPy does not have; "
            f"expected float16/32/64, integer, bool or complex tensors (convert it in torch, "
            f"e.g. with .float(), before saving)"
        )
    return np.dtype(torch_type.numpy_dtype)


def _tensor_to_array(tensor, storage_bytes, byteorder, source):
    """Make the array a :class:`_TensorRef` describes, from its storage's raw bytes.

    The storage becomes a 1-D array; ``as_strided`` lays the tensor's shape and strides over
    it (after checking that the last element it reaches lies inside the storage); ``astype``
    copies the result into a new C-contiguous array in native byte order that owns its memory.
    """
    dtype = _numpy_dtype(tensor.torch_type, source)
    if len(storage_bytes) % dtype.itemsize:
        raise WeightsError(
            f"{source}: storage {tensor.storage.key} holds {len(storage_bytes)} bytes, "
            f"not a whole number of {dtype} elements"
        )
    storage = np.frombuffer(storage_bytes, dtype=dtype.newbyteorder("<" if byteorder == "little" else ">"))
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, dtype=dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.strides))
    if last >= storage.size:
        raise WeightsError(
            f"{source}: a tensor of shape {tensor.shape} reaches element {last} of storage "
            f"{tensor.storage.key}, which has only {storage.size} elements (truncated or damaged file)"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset:],
        shape=tensor.shape,
        strides=[s * dtype.itemsize for s in tensor.strides],
        writeable=False,
    )
    return view.astype(dtype, order="C")


class _Storages:
    """A checkpoint's storages, each read (by ``read(storage, name)``) when a tensor first needs it."""

    def __init__(self, source, byteorder, read):
        self.source = source  # the file, for error messages
        self.byteorder = byteorder
        self._read = read
        self._bytes = {}

    def array(self, tensor, name):
        """The array ``tensor`` (a :class:`_TensorRef`) describes; ``name`` says which tensor in errors."""
        key = tensor.storage.key
        if key not in self._bytes:
            self._bytes[key] = self._read(tensor.storage, name)
        return _tensor_to_array(tensor, self._bytes[key], self.byteorder, f"{self.source}: tensor {name!r}")


def _check_storage_size(storage, data, source):
    expected = storage.numel * storage.torch_type.itemsize
    if len(data) != expected:
        raise WeightsError(
            f"{source}: storage {storage.key} should hold {storage.numel} {storage.torch_type.name} "
            f"elements ({expected} bytes), found {len(data)} bytes (truncated or damaged file)"
        )


def _find_state_dict(obj, source):
    """The dict of tensors inside what the pickle held: unwrap ``{"state_dict": ...}`` and the like,
    and strip DataParallel's ``module.`` prefix."""
    for _ in range(MAX_WRAPPING):
        wrapped = [obj[key] for key in WRAPPER_KEYS if isinstance(obj, dict) and isinstance(obj.get(key), dict)]
        if not wrapped:
            break
        obj = wrapped[0]
    if not isinstance(obj, dict):
        raise WeightsError(f"{source}: expected a state dict (a dict of tensors), found {type(obj).__name__}")
    not_tensors = [f"{key!r} ({type(value).__name__})" for key, value in obj.items() if not isinstance(value, _TensorRef)]
    if not_tensors:
        raise WeightsError(
            f"{source}: expected a state dict whose values are all tensors, or one wrapped as "
            f"{{'state_dict': ...}}, {{'model_state_dict': ...}} or {{'model': ...}}; found "
            f"non-tensor values for keys {', '.join(not_tensors[:5])}"
            + (f" and {len(not_tensors) - 5} more" if len(not_tensors) > 5 else "")
        )
    not_strings = [repr(key) for key in obj if not isinstance(key, str)]
    if not_strings:
        raise WeightsError(f"{source}: expected string keys in the state dict, found {', '.join(not_strings[:5])}")
    if obj and all(key.startswith(DATA_PARALLEL_PREFIX) for key in obj):
        obj = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in obj.items()}
    return obj


def _with_arrays(obj, storages):
    """``obj`` as unpickled, with every tensor made an array: what :func:`load_torch_file` returns.

    Dicts (plain or OrderedDict, in their order), lists and tuples are rebuilt around the
    arrays; None, bool, int, float and str are kept. A tensor the pickle holds twice (pickle's
    memo: ``BINGET``) becomes one array held twice. Anything else the allow-list let through
    (a storage outside a tensor, a storage type or a rebuild function on its own, a tensor as a
    dict key) raises a WeightsError naming where it sits, as ``optimizer.state.0``; so does an
    object nested too deeply to walk (a thousand levels).
    """
    made = {}  # id of an unpickled tensor or container -> what it became

    def convert(value, where):
        if value is None or type(value) in (bool, int, float, str):
            return value
        if id(value) in made:
            return made[id(value)]
        name = where or "(top level)"
        if isinstance(value, _TensorRef):
            made[id(value)] = storages.array(value, name)
        elif type(value) in (dict, OrderedDict):
            made[id(value)] = result = type(value)()  # before the items: a dict may hold itself
            for key, item in value.items():
                if not _is_plain_key(key):
                    kind = "tensor" if isinstance(key, _TensorRef) else type(key).__name__
                    raise WeightsError(f"{storages.source}: {name!r} has a key of type {kind}; expected str or int keys")
                result[key] = convert(item, item_path(where, key))
        elif type(value) is list:
            made[id(value)] = result = []
            result.extend(convert(item, item_path(where, i)) for i, item in enumerate(value))
        elif type(value) is tuple:
            made[id(value)] = tuple(convert(item, item_path(where, i)) for i, item in enumerate(value))
        else:
            raise _unexpected(value, name, storages.source)
        return made[id(value)]

    try:
        return convert(obj, "")
    except RecursionError as error:
        raise WeightsError(f"{storages.source}: the object is nested too deeply to read") from error


def _unexpected(value, where, source):
    if isinstance(value, _TorchType):
        found = f"is torch.{value.name} on its own, not in a tensor"
    elif isinstance(value, _StorageRef):
        found = "is a storage on its own, not in a tensor"
    else:
        found = f"has type {type(value).__name__}"
    return WeightsError(
        f"{source}: {where!r} {found}; expected tensors, dicts, lists and tuples, str, int, "
        f"float, bool and None"
    )


def _is_plain_key(key):
    """Whether ``key`` is a dict key torch.save can write and we keep as it is (not a tensor)."""
    return key is None or type(key) in (bool, int, float, str) or (type(key) is tuple and all(map(_is_plain_key, key)))


def _state_dict_arrays(obj, storages):
    """The state dict in ``obj`` (see :func:`_find_state_dict`), its tensors made arrays:
    what :func:`load_torch_checkpoint` returns. Only its tensors' storages are read."""
    state = _find_state_dict(obj, storages.source)
    return {name: storages.array(tensor, name) for name, tensor in state.items()}


def _read_zip_checkpoint(path, convert):
    """Unpickle a zip checkpoint and return ``convert(object, storages)``, the file still open."""
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            folder = zip_folder(names)
            if folder is None:
                raise WeightsError(
                    f"{source}: expected a PyTorch zip checkpoint with a record '<name>/data.pkl', "
                    f"found a zip archive with {_describe_members(names)}"
                )
            if f"{folder}/constants.pkl" in names:
                raise WeightsError(
                    f"{source}: this is a TorchScript archive (torch.jit.save), not a checkpoint; "
                    f"save model.state_dict() with torch.save instead"
                )
            byteorder = "little"  # files from before the byteorder record were all little-endian
            if f"{folder}/byteorder" in names:
                byteorder = archive.read(f"{folder}/byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise WeightsError(f"{source}: expected byteorder 'little' or 'big', found {byteorder!r}")
            with archive.open(f"{folder}/data.pkl") as file:
                obj, _ = _unpickle(file, source)

            def read_storage(storage, name):
                record = f"{folder}/data/{storage.key}"
                if record not in names:
                    raise WeightsError(f"{source}: the record {record} for tensor {name!r} is missing")
                data = archive.read(record)
                _check_storage_size(storage, data, source)
                return data

            return convert(obj, _Storages(source, byteorder, read_storage))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise WeightsError(f"{source}: the zip archive is damaged or truncated ({error})") from error


def _read_legacy_checkpoint(path, convert):
    """Unpickle a legacy checkpoint, read its storages, and return ``convert(object, storages)``."""
    source = str(path)
    with open(path, "rb") as file:
        magic, _ = _unpickle(file, source)
        if magic != LEGACY_MAGIC_NUMBER:
            raise WeightsError(
                f"{source}: expected a PyTorch checkpoint, found a pickle that does not start with "
                f"torch's magic number {LEGACY_MAGIC_NUMBER:#x} (it starts with a {type(magic).__name__})"
            )
        version, _ = _unpickle(file, source)
        if version != LEGACY_PROTOCOL_VERSION:
            raise WeightsError(f"{source}: expected legacy protocol version {LEGACY_PROTOCOL_VERSION}, found {version!r}")
        _unpickle(file, source)  # system info: byte order and C type sizes of the saving machine
        obj, unpickler = _unpickle(file, source)
        keys, _ = _unpickle(file, source)
        if not (isinstance(keys, list) and all(isinstance(key, str) and key in unpickler.storages for key in keys)):
            raise WeightsError(f"{source}: the list of storage keys does not match the storages in the pickle")
        storages = {}  # the raw bytes follow the pickles, in the order of ``keys``
        for key in keys:  # always little-endian, whatever machine wrote them
            storage = unpickler.storages[key]
            count = file.read(8)
            if len(count) != 8 or struct.unpack("<q", count)[0] != storage.numel:
                raise WeightsError(f"{source}: storage {key} is truncated or damaged (bad element count)")
            storages[key] = file.read(storage.numel * storage.torch_type.itemsize)
            _check_storage_size(storage, storages[key], source)

    def read_storage(storage, name):
        if storage.key not in storages:
            raise WeightsError(f"{source}: the storage {storage.key} for tensor {name!r} is missing")
        return storages[storage.key]

    return convert(obj, _Storages(source, "little", read_storage))


def _describe_members(names):
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} members ({shown})" if names else "no members"


def _read_checkpoint(path, convert):
    """Unpickle the checkpoint at ``path`` (either format) and return ``convert(object, storages)``."""
    path = existing_file(path)
    kind = sniff(path)
    if kind == "torch-zip":
        return _read_zip_checkpoint(path, convert)
    if kind == "torch-legacy":
        return _read_legacy_checkpoint(path, convert)
    found = "an .npz archive (read it with load_npz)" if kind == "npz" else describe_start(path)
    raise WeightsError(
        f"{path}: expected a PyTorch checkpoint (a zip archive with <name>/data.pkl, or a legacy "
        f"file of pickles starting with torch's magic number), found {found}"
    )


def load_torch_file(path):
    """Read a whole ``torch.save`` file without torch: the object, with NumPy arrays for tensors.

    For a training checkpoint, written by :func:`~npmobilenet.io.save_torch_file` or by
    ``torch.save`` in either format, such as ``{"model": state_dict, "optimizer":
    optimizer.state_dict(), "epoch": 3, ...}``: dicts (plain or OrderedDict, in their order;
    int keys stay ints), lists, tuples, str, int, float, bool and None come back as they were
    saved, and every tensor as an array, as :func:`load_torch_checkpoint` makes them (owning
    its memory, C-contiguous, native byte order, the tensor's dtype and shape; a 0-d tensor a
    0-d array; a tensor the file holds twice, one array held twice).

    The allow-list is :func:`load_torch_checkpoint`'s: any global off it raises
    :class:`~npmobilenet.errors.UnsafeCheckpointError` and nothing is run, so a file holding
    anything but those values and tensors (a set, bytes, a complex number, an object) is
    refused. Raises :class:`~npmobilenet.errors.WeightsError` (with the path) for a missing,
    truncated or damaged file and for a dtype NumPy lacks, naming the tensor by where it
    sits (``'optimizer.state.0.momentum_buffer'``).
    """
    return _read_checkpoint(path, _with_arrays)


def load_class_names(path):
    """The ``"class_names"`` a training checkpoint holds (a list of str), or None; no tensor is read.

    :func:`npmobilenet.train.fit` saves the names of the classes it learned beside the model,
    so that a fine-tuned checkpoint can name what it predicts. Only the pickle is read, with
    the same allow-list as every reader here; ``.npz`` files and state dicts give None.
    """
    if sniff(existing_file(path)) not in ("torch-zip", "torch-legacy"):
        return None
    names = _read_checkpoint(path, lambda obj, storages: obj.get("class_names") if isinstance(obj, dict) else None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(name, str) for name in names):
        return list(names)
    return None


def load_torch_checkpoint(path):
    """Read a ``torch.save`` checkpoint without torch: returns ``{name: numpy array}``.

    Expects a file written by ``torch.save`` in either format (see the module docstring)
    holding a state dict: a dict of tensors, possibly wrapped as ``{"state_dict": sd, ...}``,
    ``{"model_state_dict": sd, ...}`` or ``{"model": sd, ...}`` (whatever else the wrapper
    holds: a training checkpoint from :func:`~npmobilenet.io.save_torch_file` is read too,
    only the model's tensors), possibly with DataParallel's ``module.`` prefix on every key
    (removed). Every array owns its memory, is C-contiguous and in native byte order, with the
    tensor's dtype (float32/64, float16, integer, bool, complex) and shape; a 0-d tensor
    (``num_batches_tracked``) becomes a 0-d array. Tensors saved on a GPU are read as CPU
    arrays. Insertion order is kept.

    Raises :class:`~npmobilenet.errors.UnsafeCheckpointError` when the pickle names any global
    off the allow-list (nothing is run), and :class:`~npmobilenet.errors.WeightsError` (with
    the path) for a missing file, a file that is neither format, a truncated or damaged file,
    an unknown byte order, a dtype NumPy lacks (bfloat16, quantized) or non-tensor values.
    """
    return _read_checkpoint(path, _state_dict_arrays)
