"""Helpers the tests of npmobilenet.io share: torch.save in either format, comparing a state dict
with torch's, a NumPy state dict of every kind of array, and the listing of a folder."""

from pathlib import Path

import numpy as np


def torch_save(torch, obj, path, file_format):
    """``torch.save`` in the zip format or in the legacy single-pickle format."""
    torch.save(obj, path, _use_new_zipfile_serialization=(file_format == "zip"))
    return path


def assert_same_state(ours, theirs, owns_memory=True):
    """``ours`` (NumPy) equals ``theirs`` (torch tensors) exactly: keys in order, dtypes, shapes,
    values; every array C-contiguous and writeable and (read from a checkpoint) owning its memory,
    not a view into the file's bytes."""
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        expected = tensor.detach().numpy()
        array = ours[name]
        assert isinstance(array, np.ndarray), name
        assert array.dtype == expected.dtype, f"{name}: dtype {array.dtype}, torch has {expected.dtype}"
        assert array.shape == expected.shape, f"{name}: shape {array.shape}, torch has {expected.shape}"
        np.testing.assert_array_equal(array, expected, err_msg=name)
        assert array.flags.c_contiguous and array.flags.writeable, name
        assert array.flags.owndata or not owns_memory, name


def numpy_state():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2.0, 4),  # float64
        "bn.num_batches_tracked": np.array(17, dtype=np.int64),  # 0-d
        "ids": np.arange(-5, 5, dtype=np.int64),
        "half": rng.standard_normal(6).astype(np.float16),
        "mask": np.array([True, False]),
        "bytes": np.arange(3, dtype=np.uint8),
        "transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not C-contiguous
        "big_endian": np.arange(4, dtype=">f8"),
        "empty": np.zeros((0, 2), dtype=np.float32),
    }


def listing(directory):
    return sorted(path.name for path in Path(directory).iterdir())
