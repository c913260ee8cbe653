"""Weights: reading and writing PyTorch checkpoints without PyTorch, ``.npz`` files, the
registry of published weights, and the download cache.

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

Other things here
-----------------

* :func:`save_torch_checkpoint` writes the zip format (``torch.load(weights_only=True)``
  reads it); :func:`save_npz` and :func:`load_npz` use NumPy's own format.
* :func:`load_state_dict_file` reads any of them, looking at the content, not only the name.
* Every file is written through :func:`atomic_write`: a half-written file is never left
  behind, and a file being replaced stays intact if writing the new one fails.
* :data:`WEIGHTS` lists torchvision's published MobileNetV2 weights (:class:`WeightsSpec`);
  :func:`resolve_weights` finds weights in the order DESIGN.md gives: the ``weights=``
  argument, the ``NPMOBILENET_WEIGHTS`` environment variable, the cache
  (``$NPMOBILENET_HOME``, default ``~/.cache/npmobilenet``), then a download whose SHA-256
  is checked, converted once to ``.npz``.

Only the standard library and NumPy are used: this module never imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import os
import pickle
import re
import struct
import sys
import urllib.request
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from .errors import UnsafeCheckpointError, WeightsError

__all__ = [
    "DEFAULT_WEIGHTS",
    "WEIGHTS",
    "WeightsSpec",
    "atomic_write",
    "cache_dir",
    "cached_weights_path",
    "download_weights",
    "get_weights_spec",
    "load_npz",
    "load_state_dict_file",
    "load_torch_checkpoint",
    "resolve_weights",
    "save_npz",
    "save_torch_checkpoint",
    "spec_for_path",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_ARCHIVE_NAME = "archive"
ZIP_ALIGNMENT = 64  # bytes; torch aligns each record's data so it can be memory-mapped
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # {"state_dict": sd, "epoch": 3, ...}
MAX_WRAPPING = 3  # {"model": {"state_dict": sd}} is two levels
DATA_PARALLEL_PREFIX = "module."
ENV_WEIGHTS = "NPMOBILENET_WEIGHTS"
ENV_HOME = "NPMOBILENET_HOME"
DEFAULT_CACHE_DIR = "~/.cache/npmobilenet"
DOWNLOAD_TIMEOUT = 30  # seconds without data before a download gives up
DOWNLOAD_CHUNK = 1 << 16


# ============================================================================================
# Atomic writes
# ============================================================================================


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    Use as ``with atomic_write("out.npz") as file: file.write(...)``. The data goes to a
    hidden temporary file in the same directory; when the block ends without an exception
    the file is flushed, ``fsync``-ed and renamed over ``path`` with :func:`os.replace`, which
    is atomic: a reader sees the old file or the whole new one, never half of it. When the
    block raises, the temporary file is deleted, ``path`` is left as it was, and the
    exception propagates. ``mode`` is ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    The folder must exist (``FileNotFoundError`` naming it otherwise).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; expected the name of a file")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    encoding = None if mode == "wb" else "utf-8"
    try:
        with open(temporary, mode.replace("w", "x"), encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


# ============================================================================================
# Torch's types, as the pickle names them
# ============================================================================================

# storage type -> (NumPy dtype, or None when NumPy has no such type; bytes per element)
STORAGE_TYPES = {
    "DoubleStorage": ("float64", 8),
    "FloatStorage": ("float32", 4),
    "HalfStorage": ("float16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
    "ComplexFloatStorage": ("complex64", 8),
    "ComplexDoubleStorage": ("complex128", 16),
    "UntypedStorage": ("uint8", 1),  # plain bytes: _rebuild_tensor_v3 says which dtype
    "BFloat16Storage": (None, 2),
    "QInt8Storage": (None, 1),
    "QUInt8Storage": (None, 1),
    "QInt32Storage": (None, 4),
    "QUInt4x2Storage": (None, 1),
    "QUInt2x4Storage": (None, 1),
}
STORAGE_MODULES = ("torch", "torch.storage", "torch.cuda")  # torch.cuda.*: old GPU checkpoints

# dtype (as in ``torch.uint16``) -> (NumPy dtype or None, bytes per element), for _rebuild_tensor_v3
TORCH_DTYPES = {
    "uint16": ("uint16", 2),
    "uint32": ("uint32", 4),
    "uint64": ("uint64", 8),
    "complex32": (None, 4),
    "float8_e5m2": (None, 1),
    "float8_e4m3fn": (None, 1),
    "float8_e5m2fnuz": (None, 1),
    "float8_e4m3fnuz": (None, 1),
    "float8_e8m0fnu": (None, 1),
    "float4_e2m1fn_x2": (None, 1),
    "bits8": (None, 1),
    "bits16": (None, 2),
    "bits1x8": (None, 1),
    "bits2x4": (None, 1),
    "bits4x2": (None, 1),
}

# NumPy dtype -> the storage type torch writes for it (the ones save_torch_checkpoint can write)
NUMPY_TO_STORAGE = {
    np.dtype(numpy_name): storage
    for storage, (numpy_name, _) in STORAGE_TYPES.items()
    if numpy_name is not None and storage != "UntypedStorage"
}


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


def _zip_folder(names):
    """The folder holding ``data.pkl`` in a torch zip checkpoint, or None."""
    for name in names:
        folder, _, rest = name.partition("/")
        if rest == "data.pkl" and folder:
            return folder
    return None


def _load_zip_checkpoint(path):
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            folder = _zip_folder(names)
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
            state = _find_state_dict(obj, source)
            storages = {}
            arrays = {}
            for name, tensor in state.items():
                key = tensor.storage.key
                if key not in storages:
                    record = f"{folder}/data/{key}"
                    if record not in names:
                        raise WeightsError(f"{source}: the record {record} for tensor {name!r} is missing")
                    storages[key] = archive.read(record)
                    _check_storage_size(tensor.storage, storages[key], source)
                arrays[name] = _tensor_to_array(tensor, storages[key], byteorder, f"{source}: tensor {name!r}")
            return arrays
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise WeightsError(f"{source}: the zip archive is damaged or truncated ({error})") from error


def _load_legacy_checkpoint(path):
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
    state = _find_state_dict(obj, source)
    return {
        name: _tensor_to_array(tensor, storages[tensor.storage.key], "little", f"{source}: tensor {name!r}")
        for name, tensor in state.items()
    }


def _describe_members(names):
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} members ({shown})" if names else "no members"


def _describe_start(path):
    """A few words on what a file looks like, for error messages."""
    with open(path, "rb") as file:
        head = file.read(64)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK"):
        return "a zip archive" if zipfile.is_zipfile(path) else "a zip archive that is truncated or damaged"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an archive of named arrays"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with bytes {head[:8].hex(' ')}"
    if all(char.isprintable() or char in "\r\n\t" for char in text):
        return f"text starting with {text[:40]!r}"
    return f"binary data starting with bytes {head[:8].hex(' ')}"


def _existing_file(path):
    """``path`` as a Path, or a WeightsError when there is no such file."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsError(f"weights file {str(path)!r} {what} (looked at {path.absolute()})")
    return path


def _sniff(path):
    """What a file holds, from its content (not its name): ``"torch-zip"``, ``"torch-legacy"``
    (a file starting with a pickle's PROTO opcode), ``"npz"``, or None."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if _zip_folder(names) is not None:
            return "torch-zip"
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        return None
    with open(path, "rb") as file:
        return "torch-legacy" if file.read(1) == pickle.PROTO else None


def load_torch_checkpoint(path):
    """Read a ``torch.save`` checkpoint without torch: returns ``{name: numpy array}``.

    Expects a file written by ``torch.save`` in either format (see the module docstring)
    holding a state dict: a dict of tensors, possibly wrapped as ``{"state_dict": sd, ...}``,
    ``{"model_state_dict": sd, ...}`` or ``{"model": sd, ...}``, possibly with DataParallel's
    ``module.`` prefix on every key (removed). Every array owns its memory, is C-contiguous
    and in native byte order, with the tensor's dtype (float32/64, float16, integer, bool,
    complex) and shape; a 0-d tensor (``num_batches_tracked``) becomes a 0-d array. Tensors
    saved on a GPU are read as CPU arrays. Insertion order is kept.

    Raises :class:`~npmobilenet.errors.UnsafeCheckpointError` when the pickle names any global
    off the allow-list (nothing is run), and :class:`~npmobilenet.errors.WeightsError` (with
    the path) for a missing file, a file that is neither format, a truncated or damaged file,
    an unknown byte order, a dtype NumPy lacks (bfloat16, quantized) or non-tensor values.
    """
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "torch-zip":
        return _load_zip_checkpoint(path)
    if kind == "torch-legacy":
        return _load_legacy_checkpoint(path)
    found = "an .npz archive (read it with load_npz)" if kind == "npz" else _describe_start(path)
    raise WeightsError(
        f"{path}: expected a PyTorch checkpoint (a zip archive with <name>/data.pkl, or a legacy "
        f"file of pickles starting with torch's magic number), found {found}"
    )


# ============================================================================================
# Writing torch checkpoints
# ============================================================================================

# The pickle is written opcode by opcode (protocol 2, as torch writes it): Python's own Pickler
# would have to import torch to name torch's functions. The opcodes are the constants of the
# ``pickle`` module; ``python -m pickletools FILE`` shows them one per line.


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
        _op_global("torch", NUMPY_TO_STORAGE[_native(array.dtype)]),
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


def _native(dtype):
    """``dtype`` in this machine's byte order (``>f4`` and ``<f4`` are both float32)."""
    return dtype.newbyteorder("=")


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


def _checked_state_dict(state_dict, what, dtypes=None):
    """``{name: array}`` from a mapping of names to arrays, or a WeightsError saying what is wrong."""
    if not hasattr(state_dict, "items"):
        raise WeightsError(f"{what}: expected a dict of arrays (a state dict), found {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise WeightsError(f"{what}: expected string keys, found {name!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biufc" or (dtypes is not None and _native(array.dtype) not in dtypes):
            allowed = "numbers or booleans" if dtypes is None else ", ".join(sorted(str(d) for d in dtypes))
            raise WeightsError(f"{what}: {name!r} has dtype {array.dtype}; expected {allowed}")
        arrays[name] = array
    return arrays


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
    arrays = _checked_state_dict(state_dict, "save_torch_checkpoint", dtypes=NUMPY_TO_STORAGE)
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


# ============================================================================================
# .npz files, and any weights file
# ============================================================================================


def save_npz(state_dict, path):
    """Write ``state_dict`` (``{name: array}``) to an ``.npz`` archive at ``path``, atomically.

    The file is what ``np.savez`` writes (one ``<name>.npy`` member per array, uncompressed),
    written at exactly ``path`` (``np.savez`` would add ``.npz`` to a name without it), with
    no pickled objects. Raises :class:`~npmobilenet.errors.WeightsError` for a value that is
    not a numeric or boolean array, ``OSError`` when the file cannot be written; on any error
    the file at ``path`` is left as it was.
    """
    arrays = _checked_state_dict(state_dict, "save_npz")
    with atomic_write(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


# What np.load raises for a file that is not an .npz archive, is damaged, or holds pickles.
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _npz_error(path, error):
    return WeightsError(
        f"{path}: expected an .npz archive of numeric arrays, found {_describe_start(path)} "
        f"({type(error).__name__}: {error})"
    )


def load_npz(path):
    """Read an ``.npz`` archive into ``{name: array}`` (``np.load`` with ``allow_pickle=False``).

    Raises :class:`~npmobilenet.errors.WeightsError` naming the path when the file is missing,
    is not an ``.npz`` archive, is damaged, or holds pickled objects.
    """
    path = _existing_file(path)
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
        hint = " (a PyTorch checkpoint: read it with load_torch_checkpoint)" if _sniff(path) == "torch-zip" else ""
        raise WeightsError(
            f"{path}: expected an .npz archive of .npy arrays, found a zip archive with other "
            f"members: {', '.join(not_arrays[:3])}{hint}"
        )
    return arrays


def load_state_dict_file(path):
    """Read weights from a torch checkpoint (``.pth``, ``.pt``, any name) or an ``.npz`` file.

    The content decides: a zip archive with ``<name>/data.pkl`` or a legacy torch pickle is
    read with :func:`load_torch_checkpoint`, a zip of ``.npy`` members with :func:`load_npz`.
    When the content is neither, the suffix picks the reader (``.npz``: ``load_npz``; anything
    else: ``load_torch_checkpoint``), whose WeightsError says what was expected and found.
    """
    path = _existing_file(path)
    kind = _sniff(path)
    if kind == "npz" or (kind is None and path.suffix.lower() == ".npz"):
        return load_npz(path)
    return load_torch_checkpoint(path)


# ============================================================================================
# The registry of published weights
# ============================================================================================


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """One published set of MobileNetV2 weights, and the preprocessing it was trained with.

    ``sha256_prefix`` is the start of the file's SHA-256, the 8 hex digits in its name (torch
    hub's convention), which is how a download is checked. ``acc1`` is the published ImageNet
    top-1 accuracy in percent. Preprocessing: resize the shorter side to ``resize_size`` with
    ``interpolation``, center-crop ``crop_size``, scale to [0, 1], then ``(x - mean) / std``.
    To fetch from somewhere else, make a copy: ``dataclasses.replace(spec, url=...)``.
    """

    name: str
    url: str
    file_name: str
    sha256_prefix: str
    acc1: float
    resize_size: int
    crop_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    num_classes: int = 1000

    def __post_init__(self):
        if not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256_prefix):
            raise WeightsError(f"WeightsSpec {self.name}: sha256_prefix must be 8 to 64 lowercase hex digits, got {self.sha256_prefix!r}")

    @property
    def categories(self):
        """The class names, ``categories[k]`` naming output ``k`` (read on first use)."""
        from .imagenet import categories

        return categories()


def _torchvision_spec(name, file_name, acc1, resize_size):
    return WeightsSpec(
        name=name,
        url=f"https://download.pytorch.org/models/{file_name}",
        file_name=file_name,
        sha256_prefix=re.search(r"-([0-9a-f]{8,})\.", file_name).group(1),
        acc1=acc1,
        resize_size=resize_size,
    )


WEIGHTS = MappingProxyType({
    "IMAGENET1K_V1": _torchvision_spec("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", 71.878, 256),
    "IMAGENET1K_V2": _torchvision_spec("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 72.154, 232),
})
DEFAULT_WEIGHTS = "IMAGENET1K_V1"
TORCHVISION_ENUM_PREFIX = "MOBILENET_V2_WEIGHTS."


def _registry_spec(name):
    """The spec a name means (``IMAGENET1K_V1``, ``DEFAULT``, ``MobileNet_V2_Weights.IMAGENET1K_V1``;
    any case), or None."""
    key = str(name).strip().upper()
    key = key.removeprefix(TORCHVISION_ENUM_PREFIX)
    return WEIGHTS.get(DEFAULT_WEIGHTS if key == "DEFAULT" else key)


def get_weights_spec(name):
    """The :class:`WeightsSpec` of a registry name; a spec is returned as it is.

    Accepts ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"`` (= ``DEFAULT_WEIGHTS``) and
    torchvision's spelling ``"MobileNet_V2_Weights.IMAGENET1K_V1"``, in any case. Raises
    :class:`~npmobilenet.errors.WeightsError` listing the known names for any other name.
    """
    if isinstance(name, WeightsSpec):
        return name
    spec = _registry_spec(name)
    if spec is None:
        raise _unknown_weights_error(name)
    return spec


def _unknown_weights_error(name):
    return WeightsError(
        f"unknown weights {name!r}: expected one of the names {', '.join(WEIGHTS)} or DEFAULT "
        f"(= {DEFAULT_WEIGHTS}; torchvision's MobileNet_V2_Weights.{DEFAULT_WEIGHTS} works too), "
        f"or a path to a .pth, .pt or .npz file"
    )


def spec_for_path(path):
    """The registry entry whose SHA-256 prefix appears in the file name of ``path``, else the default.

    This is how a local file gets its preprocessing: ``mobilenet_v2-7ebf99e0.pth`` (or its
    cached ``.npz``) is IMAGENET1K_V2; a file named otherwise is assumed to want the
    default entry's (IMAGENET1K_V1: resize 256, crop 224).
    """
    name = Path(path).name
    for spec in WEIGHTS.values():
        if spec.sha256_prefix in name:
            return spec
    return WEIGHTS[DEFAULT_WEIGHTS]


# ============================================================================================
# Cache, download and resolution
# ============================================================================================


def cache_dir():
    """The cache folder, ``$NPMOBILENET_HOME`` or ``~/.cache/npmobilenet``, created if missing."""
    directory = Path(os.environ.get(ENV_HOME) or DEFAULT_CACHE_DIR).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def cached_weights_path(spec):
    """Where the converted weights of ``spec`` live: ``<cache_dir>/<file name stem>.npz``."""
    return cache_dir() / f"{Path(spec.file_name).stem}.npz"


def _offline_hint(spec):
    return (
        f"To use a copy of the file instead, download {spec.file_name} elsewhere and pass its "
        f"path: weights=\"path/to/{spec.file_name}\" in Python, --weights PATH on the command "
        f"line, or {ENV_WEIGHTS}=PATH in the environment"
    )


def _show_progress(received, total):
    megabytes = f"{received / 1e6:.1f}"
    if total:
        megabytes += f" / {total / 1e6:.1f} MB ({100 * received // total}%)"
    else:
        megabytes += " MB"
    sys.stderr.write(f"\rdownloading: {megabytes}")
    sys.stderr.flush()


def _content_length(response):
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def _download_to(spec, file, progress):
    """Stream ``spec.url`` into ``file``; return the SHA-256 hex digest of what arrived.

    Raises WeightsError when fewer bytes arrive than the server announced.
    """
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT) as response:
        total = _content_length(response)
        while chunk := response.read(DOWNLOAD_CHUNK):
            file.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress:
                _show_progress(received, total)
    if progress:
        sys.stderr.write("\n")
    if total is not None and received != total:
        raise WeightsError(
            f"the download from {spec.url} stopped after {received} of {total} bytes (the "
            f"connection was closed); nothing was saved. Try again. {_offline_hint(spec)}"
        )
    return digest.hexdigest()


def _download_checked(spec, path, progress):
    """Download ``spec.url`` to ``path`` (atomically) if its SHA-256 starts with the spec's prefix."""
    try:
        with atomic_write(path) as file:
            sha256 = _download_to(spec, file, progress)
            if not sha256.startswith(spec.sha256_prefix):
                raise WeightsError(
                    f"the file downloaded from {spec.url} has SHA-256 {sha256}, but expected one "
                    f"starting with {spec.sha256_prefix}: it is damaged or not the published "
                    f"file; nothing was saved. {_offline_hint(spec)}"
                )
    except WeightsError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        # URLError, HTTPError, timeouts and refused connections are all OSErrors
        raise WeightsError(
            f"could not download the weights from {spec.url} ({type(error).__name__}: {error}). "
            f"{_offline_hint(spec)}"
        ) from error


def download_weights(spec, *, progress=True):
    """Download ``spec.url``, check it, convert it to ``.npz`` in the cache; return that path.

    ``spec`` is a :class:`WeightsSpec` or a registry name. The file is streamed, through
    :func:`atomic_write`, to ``<cache_dir>/<file_name>.download``, with a progress line on
    stderr when ``progress`` is true. Its SHA-256 must start with ``spec.sha256_prefix`` and
    its size must match the Content-Length the server sent. The checked file is read with
    :func:`load_torch_checkpoint`, written to :func:`cached_weights_path` (atomically), and
    deleted. Raises :class:`~npmobilenet.errors.WeightsError` naming the URL for a network
    failure, a short download or a hash mismatch; nothing is left in the cache then.
    """
    spec = get_weights_spec(spec)
    destination = cached_weights_path(spec)
    downloaded = destination.with_name(f"{spec.file_name}.download")
    try:
        _download_checked(spec, downloaded, progress)
        save_npz(load_torch_checkpoint(downloaded), destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            downloaded.unlink()
    return destination


def _load_registry_weights(spec, progress):
    """The state dict of a registry entry: from the cache if there, else downloaded into it."""
    path = cached_weights_path(spec)
    if not path.exists():
        return load_npz(download_weights(spec, progress=progress))
    try:
        return load_npz(path)
    except WeightsError as error:
        raise WeightsError(f"{error}. This is the cache's copy of {spec.name}: delete it to download it again") from error


def _looks_like_path(text):
    return "/" in text or os.sep in text or text.lower().endswith((".pth", ".pt", ".npz")) or os.path.exists(text)


def _resolve(weights, progress):
    """``(state_dict, spec)`` for a spec, a registry name or a path."""
    if isinstance(weights, WeightsSpec):
        return _load_registry_weights(weights, progress), weights
    if isinstance(weights, str) and _registry_spec(weights) is not None:
        spec = _registry_spec(weights)
        return _load_registry_weights(spec, progress), spec
    if isinstance(weights, os.PathLike) or (isinstance(weights, str) and _looks_like_path(weights)):
        return load_state_dict_file(weights), spec_for_path(weights)
    raise _unknown_weights_error(weights)


def resolve_weights(weights=None, *, progress=True):
    """Find the weights asked for; return ``(state_dict, spec)``.

    ``weights`` is a registry name (see :func:`get_weights_spec`), a :class:`WeightsSpec`, or
    a path (``str`` or ``os.PathLike``) to a ``.pth``, ``.pt`` or ``.npz`` file. ``None``
    means the ``NPMOBILENET_WEIGHTS`` environment variable (a name or a path), and when that
    is unset or empty, :data:`DEFAULT_WEIGHTS`. A registry entry is read from the cache
    (:func:`cached_weights_path`) when it is there, without touching the network, and
    downloaded into it otherwise (:func:`download_weights`; ``progress`` shows a progress
    line). A file is read with :func:`load_state_dict_file`, and the spec returned with it,
    for its preprocessing, is :func:`spec_for_path`'s: the entry whose hash prefix is in the
    file name, else the default entry.

    Raises :class:`~npmobilenet.errors.WeightsError` for an unknown name (listing the known
    ones), a missing or unreadable file, or a failed download (naming the URL and how to pass
    a local file instead).
    """
    if weights is None and os.environ.get(ENV_WEIGHTS):
        value = os.environ[ENV_WEIGHTS]
        try:
            return _resolve(value, progress)
        except WeightsError as error:
            raise type(error)(f"from the environment variable {ENV_WEIGHTS}={value!r}: {error}") from error
    return _resolve(DEFAULT_WEIGHTS if weights is None else weights, progress)
