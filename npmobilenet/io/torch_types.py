"""torch's element types as a checkpoint names them, and the NumPy dtype of each.

A checkpoint's pickle names a storage type (``torch.FloatStorage``) for every storage, and
``_rebuild_tensor_v3`` names a dtype (``torch.uint16``). The reader
(:mod:`npmobilenet.io.torch_load`) looks both up here; the writer
(:mod:`npmobilenet.io.torch_save`) names the storage type of each array it writes with
:data:`NUMPY_TO_STORAGE`.
"""

import numpy as np

__all__ = ["NUMPY_TO_STORAGE", "STORAGE_MODULES", "STORAGE_TYPES", "TORCH_DTYPES"]

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
