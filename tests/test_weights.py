"""Weights files: torch checkpoints read and written without torch, the allow-list, ``.npz``,
atomic writes, the registry, the order in which weights are found, and the download cache.

Every checkpoint read here is written in the test by ``torch.save`` itself (both of its
formats), and every checkpoint written by npmobilenet is read back by ``torch.load`` with
``weights_only=True``: torch is the judge on both sides. Downloads go to a file server
started on 127.0.0.1 in the test; nothing here touches the internet.
"""

import dataclasses
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import threading
import urllib.request
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from npmobilenet import weights
from npmobilenet.errors import UnsafeCheckpointError, WeightsError
from npmobilenet.weights import (
    DEFAULT_WEIGHTS,
    WEIGHTS,
    WeightsSpec,
    atomic_write,
    cache_dir,
    download_weights,
    get_weights_spec,
    load_npz,
    load_state_dict_file,
    load_torch_checkpoint,
    resolve_weights,
    save_npz,
    save_torch_checkpoint,
    spec_for_path,
)

FORMATS = ["zip", "legacy"]


# --- helpers -------------------------------------------------------------------------------


def torch_save(torch, obj, path, file_format):
    """``torch.save`` in the zip format or in the legacy single-pickle format."""
    torch.save(obj, path, _use_new_zipfile_serialization=(file_format == "zip"))
    return path


def assorted_tensors(torch):
    """A state dict with several dtypes, a 0-d tensor, and tensors that are views of others."""
    base = torch.randn(4, 6)
    shared = torch.arange(10, dtype=torch.float64)
    return OrderedDict([
        ("float32", torch.randn(3, 5)),
        ("float64", torch.randn(2, 3, dtype=torch.float64)),
        ("int64", torch.randint(-1000, 1000, (7,))),
        ("num_batches_tracked", torch.tensor(12345)),  # 0-d int64
        ("float16", torch.randn(5).half()),
        ("int32", torch.arange(-3, 3, dtype=torch.int32)),
        ("uint8", torch.arange(250, 256, dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("transposed", base.t()),  # strides (1, 6)
        ("sliced", base[1:3, 2:5]),  # storage offset 8, strides (6, 1)
        ("every_other", base[:, ::2]),  # strides (6, 2)
        ("shared_head", shared[:4]),  # two tensors, one storage
        ("shared_tail", shared[6:].view(2, 2)),
        ("empty", torch.zeros(0, 3)),
        ("scalar_float", torch.tensor(2.5)),
    ])


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


def random_torchvision_state(torch, width_mult=0.5):
    """torchvision's MobileNetV2 with random weights and non-default batch-norm buffers, in eval mode."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(width_mult=width_mult)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator))
                module.running_mean.copy_(torch.randn(c, generator=generator))
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=generator)))
    return model.eval()


def listing(directory):
    return sorted(path.name for path in Path(directory).iterdir())


# --- reading torch.save files ------------------------------------------------------------------


@pytest.mark.parametrize("file_format", FORMATS)
def test_reads_dtypes_scalars_and_views_like_torch(torch, tmp_path, file_format):
    state = assorted_tensors(torch)
    path = torch_save(torch, state, tmp_path / "assorted.pth", file_format)
    assert_same_state(load_torch_checkpoint(path), state)


@pytest.mark.parametrize("file_format", FORMATS)
def test_reads_torchvision_mobilenet_state_dict(torch, tmp_path, file_format):
    state = random_torchvision_state(torch).state_dict()
    path = torch_save(torch, state, tmp_path / "mobilenet.pth", file_format)
    ours = load_torch_checkpoint(path)
    assert_same_state(ours, state)
    assert ours["features.1.conv.2.num_batches_tracked"].shape == ()


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="state_dict"),
        pytest.param(lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}, id="model"),
        pytest.param(lambda sd: {"model_state_dict": sd, "best_acc1": 71.9}, id="model_state_dict"),
        pytest.param(lambda sd: {"model": {"state_dict": sd}}, id="nested"),
        pytest.param(lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()), id="DataParallel"),
        pytest.param(lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}, id="both"),
    ],
)
def test_unwraps_checkpoints_and_dataparallel_prefixes(torch, tmp_path, file_format, wrap):
    state = assorted_tensors(torch)
    path = torch_save(torch, wrap(state), tmp_path / "wrapped.pth", file_format)
    assert_same_state(load_torch_checkpoint(path), state)


@pytest.mark.parametrize("file_format", FORMATS)
def test_reads_parameters_and_dtypes_written_with_rebuild_tensor_v3(torch, tmp_path, file_format):
    """``nn.Parameter`` values use ``_rebuild_parameter``; uint16 uses ``_rebuild_tensor_v3`` with a dtype."""
    state = OrderedDict([
        ("weight", torch.nn.Parameter(torch.randn(3, 2))),
        ("uint16", torch.tensor([0, 1, 65535], dtype=torch.uint16)),
    ])
    path = torch_save(torch, state, tmp_path / "params.pth", file_format)
    ours = load_torch_checkpoint(path)
    np.testing.assert_array_equal(ours["weight"], state["weight"].detach().numpy())
    assert ours["uint16"].dtype == np.uint16
    np.testing.assert_array_equal(ours["uint16"], [0, 1, 65535])


@pytest.mark.parametrize("file_format", FORMATS)
def test_bfloat16_is_refused_by_name(torch, tmp_path, file_format):
    path = torch_save(torch, {"ok": torch.ones(2), "bf": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "bf.pth", file_format)
    with pytest.raises(WeightsError, match="BFloat16") as info:
        load_torch_checkpoint(path)
    assert "'bf'" in str(info.value) and ".float()" in str(info.value)


def rewrite_zip(source, destination, change):
    """Copy a zip archive, passing each record through ``change(name, data) -> data``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(destination, "w") as new:
        for name in old.namelist():
            new.writestr(name, change(name, old.read(name)))
    return destination


def test_reads_a_big_endian_zip_checkpoint(torch, tmp_path):
    """The ``byteorder`` record says how the storages' bytes are ordered; torch writes "big" on big-endian machines."""
    state = OrderedDict([("weight", torch.randn(2, 3)), ("count", torch.tensor(7)), ("ids", torch.arange(5))])
    little = torch_save(torch, state, tmp_path / "little.pth", "zip")
    itemsizes = {"data/0": 4, "data/1": 8, "data/2": 8}  # storages are numbered in pickling order

    def to_big_endian(name, data):
        record = name.split("/", 1)[1]
        if record == "byteorder":
            return b"big"
        if record in itemsizes:
            return np.frombuffer(data, dtype=f"<u{itemsizes[record]}").byteswap().tobytes()
        return data

    big = rewrite_zip(little, tmp_path / "big.pth", to_big_endian)
    ours = load_torch_checkpoint(big)
    assert_same_state(ours, state)
    assert all(array.dtype.isnative for array in ours.values())


# --- writing torch checkpoints -----------------------------------------------------------------


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


def test_saved_checkpoint_loads_in_torch_with_weights_only(torch, tmp_path):
    state = numpy_state()
    path = tmp_path / "ours.pth"
    save_torch_checkpoint(state, path)
    for mmap in (False, True):  # mmap=True needs each record's data aligned as torch aligns it
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        assert isinstance(loaded, OrderedDict)
        assert list(loaded) == list(state)
        for name, array in state.items():
            tensor = loaded[name]
            assert tensor.dtype == torch.from_numpy(array.astype(array.dtype.newbyteorder("="))).dtype, name
            assert tuple(tensor.shape) == array.shape, name
            np.testing.assert_array_equal(tensor.numpy(), array, err_msg=name)
    assert loaded["bn.num_batches_tracked"].dim() == 0 and loaded["bn.num_batches_tracked"].dtype == torch.int64


def record_data_offsets(path):
    """Where each record's data starts in a zip file, read from the local headers (30 bytes, then
    the name and the extra field, whose lengths are at bytes 26 and 28 of the header)."""
    offsets = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as file:
        for info in archive.infolist():
            file.seek(info.header_offset)
            header = file.read(30)
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            offsets[info.filename] = info.header_offset + 30 + name_length + extra_length
    return offsets


def test_saved_records_are_aligned_like_torchs(torch, tmp_path):
    """torch starts every record's data at a multiple of 64 bytes (so it can memory-map them); so do we."""
    torch_file = torch_save(torch, assorted_tensors(torch), tmp_path / "theirs.pth", "zip")
    ours = tmp_path / "ours.pth"
    save_torch_checkpoint(numpy_state(), ours)
    for path in (torch_file, ours):
        offsets = record_data_offsets(path)
        assert any(name.endswith("/data/0") for name in offsets)
        assert all(offset % 64 == 0 for offset in offsets.values()), (path.name, offsets)
    assert sorted(name.split("/", 1)[1] for name in record_data_offsets(ours)) == sorted(
        ["data.pkl", ".format_version", ".storage_alignment", "byteorder", "version"]
        + [f"data/{i}" for i in range(len(numpy_state()))]
    )


def test_saved_checkpoint_reads_back_without_torch(tmp_path):
    state = numpy_state()
    path = tmp_path / "ours.pth"
    save_torch_checkpoint(state, path)
    ours = load_torch_checkpoint(path)
    assert list(ours) == list(state)
    for name, array in state.items():
        assert ours[name].dtype == array.dtype.newbyteorder("=") and ours[name].shape == array.shape, name
        np.testing.assert_array_equal(ours[name], array, err_msg=name)


def test_saved_mobilenet_gives_torchvision_the_same_logits(torch, tmp_path):
    """torchvision state dict -> torch.save -> our reader -> our writer -> torch.load -> the same network."""
    torchvision = pytest.importorskip("torchvision")
    original = random_torchvision_state(torch)
    state = load_torch_checkpoint(torch_save(torch, original.state_dict(), tmp_path / "tv.pth", "legacy"))
    save_torch_checkpoint(state, tmp_path / "ours.pth")
    copy = torchvision.models.mobilenet_v2(width_mult=0.5)
    copy.load_state_dict(torch.load(tmp_path / "ours.pth", weights_only=True), strict=True)
    copy.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(copy(x), original(x))


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ({"names": np.array(["a", "b"])}, "'names' has dtype <U1"),
        ({"objects": np.array([None, 1], dtype=object)}, "'objects' has dtype object"),
        ({"wide": np.arange(3, dtype=np.uint16)}, "'wide' has dtype uint16"),
        ({1: np.zeros(2)}, "expected string keys"),
        ([np.zeros(2)], "expected a dict of arrays"),
    ],
)
def test_save_refuses_what_torch_could_not_read(tmp_path, state, fragment):
    with pytest.raises(WeightsError, match=fragment):
        save_torch_checkpoint(state, tmp_path / "bad.pth")
    assert listing(tmp_path) == []


# --- the real checkpoint in ../shared ----------------------------------------------------------


def test_reads_the_shared_imagenet_checkpoint_like_torch(torch, shared_dir):
    path = shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"
    ours = load_torch_checkpoint(path)
    assert len(ours) == 314
    assert_same_state(ours, torch.load(path, weights_only=True))
    assert sum(array.size for name, array in ours.items() if "running" not in name and "num_batches" not in name) == 3_504_872


# --- the allow-list ------------------------------------------------------------------------------


def payloads(marker):
    """Objects whose unpickling would create the file ``marker``, through different globals."""

    class Shell:
        def __reduce__(self):
            return os.system, (f"touch '{marker}'",)

    class Eval:
        def __reduce__(self):
            return eval, (f"open({str(marker)!r}, 'w').close()",)

    class Subprocess:
        def __reduce__(self):
            return subprocess.call, (["touch", str(marker)],)

    # The message names the global as the pickle spells it: protocol 2 writes Python 2's module
    # names (posix.system, __builtin__.eval, commands.call), which Python 3 maps back on loading.
    return {
        "os.system": (Shell(), r"\.system'"),
        "builtins.eval": (Eval(), r"\.eval'"),
        "subprocess.call": (Subprocess(), r"\.call'"),
    }


PAYLOADS = ["os.system", "builtins.eval", "subprocess.call"]


def legacy_file(*pickles):
    """A legacy checkpoint's bytes from the given objects, each pickled in turn."""
    return b"".join(pickle.dumps(obj, protocol=2) for obj in pickles)


def write_unsafe_file(torch, path, how, payload):
    """Hide ``payload`` in a checkpoint, in one of several ways an attacker might."""
    if how in FORMATS:
        torch_save(torch, {"state_dict": {"weight": payload}}, path, how)
    elif how == "zip-handmade":  # a zip whose data.pkl is any pickle at all
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
            archive.writestr("archive/version", "3\n")
    elif how == "plain-pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    elif how == "legacy-sys-info":  # the system-info pickle, before the state dict
        path.write_bytes(legacy_file(weights.LEGACY_MAGIC_NUMBER, weights.LEGACY_PROTOCOL_VERSION, payload, {}, []))
    return path


@pytest.mark.parametrize("payload_name", PAYLOADS)
def test_payloads_really_run_when_unpickled_without_the_allow_list(tmp_path, payload_name):
    """The control: plain ``pickle.loads`` runs each payload, so the tests below can fail."""
    marker = tmp_path / "pwned"
    payload, _ = payloads(marker)[payload_name]
    pickle.loads(pickle.dumps(payload, protocol=2))  # the point of the test
    assert marker.exists()


@pytest.mark.parametrize("how", [*FORMATS, "zip-handmade", "plain-pickle", "legacy-sys-info"])
@pytest.mark.parametrize("payload_name", PAYLOADS)
def test_unsafe_globals_are_refused_before_anything_runs(torch, tmp_path, how, payload_name):
    marker = tmp_path / "pwned"
    payload, global_name = payloads(marker)[payload_name]
    path = write_unsafe_file(torch, tmp_path / "evil.pth", how, payload)
    with pytest.raises(UnsafeCheckpointError, match=global_name) as info:
        load_torch_checkpoint(path)
    assert "allow-list" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict_file(path)
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused(torch, tmp_path):
    """``torch.save(model)`` pickles the class itself; a weights file should hold only tensors."""
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 3), path)
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear") as info:
        load_torch_checkpoint(path)
    assert "state_dict()" in str(info.value)


# --- malformed files ---------------------------------------------------------------------------


def truncated(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def small_torch_file(torch, path, file_format="zip", state=None):
    return torch_save(torch, {"w": torch.randn(100)} if state is None else state, path, file_format)


def with_record_changed(torch, path, record, change):
    """A zip checkpoint at ``path`` whose ``record`` went through ``change(data)``."""
    original = small_torch_file(torch, path.with_suffix(".original"), state={"w": torch.ones(8)})
    rewrite_zip(original, path, lambda name, data: change(data) if name.endswith(record) else data)
    original.unlink()


MALFORMED = {
    "empty": (lambda torch, path: path.write_bytes(b""), ["empty file"]),
    "text": (lambda torch, path: path.write_text("not weights\n"), ["text starting with 'not weights"]),
    "binary": (lambda torch, path: path.write_bytes(bytes(range(256))), ["binary data starting with bytes 00 01 02"]),
    "truncated-zip": (lambda torch, path: truncated(small_torch_file(torch, path)), ["zip archive that is truncated or damaged"]),
    "truncated-legacy": (lambda torch, path: truncated(small_torch_file(torch, path, "legacy")), ["storage", "truncated"]),
    "cut-in-the-pickle": (lambda torch, path: truncated(small_torch_file(torch, path, "legacy"), 0.05), ["damaged or truncated"]),
    "wrong-magic": (lambda torch, path: path.write_bytes(legacy_file(12345, 1001, {}, {}, [])), ["magic number"]),
    "list": (lambda torch, path: small_torch_file(torch, path, state=[torch.ones(2)]), ["expected a state dict", "found list"]),
    "non-tensor": (lambda torch, path: small_torch_file(torch, path, state={"w": torch.ones(2), "epoch": 3}), ["all tensors", "'epoch' (int)"]),
    "npz": (lambda torch, path: save_npz({"w": np.ones(2)}, path), ["an .npz archive (read it with load_npz)"]),
    "byteorder": (
        lambda torch, path: with_record_changed(torch, path, "/byteorder", lambda data: b"middle"),
        ["expected byteorder 'little' or 'big', found 'middle'"],
    ),
    "short-storage": (
        lambda torch, path: with_record_changed(torch, path, "/data/0", lambda data: data[:12]),
        ["should hold 8 FloatStorage elements (32 bytes), found 12 bytes"],
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_raise_weights_error_saying_what_was_found(torch, tmp_path, case):
    make, fragments = MALFORMED[case]
    path = tmp_path / "bad.pth"
    make(torch, path)
    with pytest.raises(WeightsError) as info:
        load_torch_checkpoint(path)
    message = str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{message!r} does not mention {fragment!r}"


def test_missing_file_and_directory_raise_weights_error_naming_the_path(tmp_path):
    for loader in (load_torch_checkpoint, load_npz, load_state_dict_file):
        with pytest.raises(WeightsError, match="does not exist") as info:
            loader(tmp_path / "nowhere.pth")
        assert "nowhere.pth" in str(info.value)
        with pytest.raises(WeightsError, match="is a directory"):
            loader(tmp_path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """Strides and offsets come from the file: they are checked before NumPy is asked to read memory."""
    path = tmp_path / "ours.pth"
    save_torch_checkpoint({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, path)
    data_pkl = load_zip_record(path, "archive/data.pkl")
    stride_3 = weights._op_tuple([weights._op_int(3), weights._op_int(1)])
    assert data_pkl.count(stride_3) == 1
    bad = rewrite_zip(path, tmp_path / "bad.pth", lambda name, data: data.replace(stride_3, weights._op_tuple([weights._op_int(30), weights._op_int(1)])))
    with pytest.raises(WeightsError, match="reaches element 32 of storage 0, which has only 6 elements"):
        load_torch_checkpoint(bad)


def test_malformed_records_in_the_pickle_are_weights_errors_naming_the_file(tmp_path):
    """Records that only name allowed globals, but with arguments no torch.save writes."""
    ordered_dict = weights._op_call(weights._op_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE)
    rebuild = weights._op_global("torch._utils", "_rebuild_tensor_v2")
    one = weights._op_tuple([weights._op_int(1)])
    not_a_storage = weights._op_call(rebuild, weights._op_tuple([weights._op_str("a string"), weights._op_int(0), one, one]))
    bad_persistent_id = weights._op_tuple([weights._op_str("module"), weights._op_str("x")]) + pickle.BINPERSID
    cases = {"expected a storage, found str": not_a_storage, "expected persistent ids": bad_persistent_id}
    for fragment, value in cases.items():
        data_pkl = pickle.PROTO + b"\x02" + ordered_dict + pickle.MARK + weights._op_str("w") + value + pickle.SETITEMS + pickle.STOP
        path = tmp_path / "odd.pth"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data_pkl)
        with pytest.raises(WeightsError, match=fragment) as info:
            load_torch_checkpoint(path)
        assert str(path) in str(info.value) and not isinstance(info.value, UnsafeCheckpointError)


def load_zip_record(path, name):
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


# --- .npz, and any weights file ----------------------------------------------------------------


def test_npz_round_trip_keeps_names_dtypes_shapes_and_values(tmp_path):
    state = numpy_state()
    path = tmp_path / "weights.bin"  # np.savez would have written weights.bin.npz
    save_npz(state, path)
    assert listing(tmp_path) == ["weights.bin"]
    loaded = load_npz(path)
    assert list(loaded) == list(state)
    for name, array in state.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
    with np.load(path, allow_pickle=False) as archive:  # a plain .npz for anyone
        np.testing.assert_array_equal(archive["conv.weight"], state["conv.weight"])


def test_npz_with_pickled_objects_or_other_content_is_refused(tmp_path):
    pickled = tmp_path / "objects.npz"
    with open(pickled, "wb") as file:
        np.savez(file, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="expected an .npz archive") as info:
        load_npz(pickled)
    assert "allow_pickle" in str(info.value)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="text starting with 'hello'"):
        load_npz(text)
    single = tmp_path / "single.npz"
    with open(single, "wb") as file:
        np.save(file, np.zeros(3))
    with pytest.raises(WeightsError, match="single .npy array"):
        load_npz(single)
    with pytest.raises(WeightsError, match="expected a dict of arrays"):
        save_npz(np.zeros(3), tmp_path / "x.npz")


def test_load_npz_of_a_torch_checkpoint_points_to_the_right_reader(tmp_path):
    path = tmp_path / "ours.npz"
    save_torch_checkpoint({"w": np.ones(2, np.float32)}, path)
    with pytest.raises(WeightsError, match="load_torch_checkpoint"):
        load_npz(path)


@pytest.mark.parametrize("file_format", ["torch-zip", "torch-legacy", "npz"])
@pytest.mark.parametrize("suffix", [".pth", ".npz", ".bin"])
def test_load_state_dict_file_goes_by_content_not_name(torch, tmp_path, file_format, suffix):
    state = {"w": np.arange(4, dtype=np.float32), "n": np.array(3)}
    path = tmp_path / f"weights{suffix}"
    if file_format == "npz":
        save_npz(state, path)
    else:
        torch_save(torch, {k: torch.from_numpy(v) for k, v in state.items()}, path, file_format.split("-")[1])
    loaded = load_state_dict_file(path)
    assert list(loaded) == ["w", "n"]
    np.testing.assert_array_equal(loaded["w"], state["w"])
    assert loaded["n"].shape == () and loaded["n"] == 3


def test_load_state_dict_file_error_comes_from_the_reader_the_suffix_names(tmp_path):
    (tmp_path / "a.npz").write_text("nope")
    (tmp_path / "a.pth").write_text("nope")
    with pytest.raises(WeightsError, match="expected an .npz archive"):
        load_state_dict_file(tmp_path / "a.npz")
    with pytest.raises(WeightsError, match="expected a PyTorch checkpoint"):
        load_state_dict_file(tmp_path / "a.pth")


# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(path, "w") as file:
        file.write("half of the new")
        assert listing(tmp_path) != ["file.txt"]  # the temporary file is beside it
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["file.txt"]
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as file:
        file.write(b"new")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["file.txt"]
    with atomic_write(path, "w") as file:
        file.write("new")
    assert path.read_text() == "new"
    assert listing(tmp_path) == ["file.txt"]


def test_atomic_write_syncs_the_data_to_disk_before_renaming(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda *args: events.append("replace") or real_replace(*args))
    with atomic_write(tmp_path / "file.bin") as file:
        file.write(b"data")
    assert events == ["fsync", "replace"]


def test_atomic_write_creates_a_new_file_and_refuses_other_modes(tmp_path):
    with atomic_write(tmp_path / "new.bin") as file:
        file.write(b"\x00\x01")
    assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "ab"):
        pass


@pytest.mark.parametrize("writer", [save_npz, save_torch_checkpoint])
def test_a_failure_in_the_middle_of_saving_leaves_the_old_file_intact(tmp_path, monkeypatch, writer):
    path = tmp_path / "weights.file"
    writer({"old": np.zeros(3, np.float32)}, path)
    old_bytes = path.read_bytes()
    real_write = zipfile.ZipFile.writestr if writer is save_torch_checkpoint else np.lib.format.write_array
    calls = []

    def fail_on_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("no space left on device")
        return real_write(*args, **kwargs)

    if writer is save_torch_checkpoint:
        monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_on_third_call)
    else:
        monkeypatch.setattr(np.lib.format, "write_array", fail_on_third_call)
    new_state = {f"new{i}": np.full(1000, i, np.float32) for i in range(5)}
    with pytest.raises(OSError, match="no space left"):
        writer(new_state, path)
    assert len(calls) == 3  # it failed with some records already written
    assert path.read_bytes() == old_bytes
    assert listing(tmp_path) == ["weights.file"]


# --- the registry ------------------------------------------------------------------------------


def test_registry_entries_are_torchvisions():
    assert list(WEIGHTS) == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    assert DEFAULT_WEIGHTS == "IMAGENET1K_V1"
    expected = {"IMAGENET1K_V1": ("b0353104", 71.878, 256), "IMAGENET1K_V2": ("7ebf99e0", 72.154, 232)}
    for name, spec in WEIGHTS.items():
        prefix, acc1, resize = expected[name]
        assert isinstance(spec, WeightsSpec) and spec.name == name
        assert spec.url == f"https://download.pytorch.org/models/mobilenet_v2-{prefix}.pth"
        assert spec.file_name == f"mobilenet_v2-{prefix}.pth" and spec.url.endswith("/" + spec.file_name)
        assert spec.sha256_prefix == prefix
        assert (spec.acc1, spec.resize_size, spec.crop_size, spec.interpolation) == (acc1, resize, 224, "bilinear")
        assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_registry_specs_are_frozen_and_checked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WEIGHTS["IMAGENET1K_V1"].url = "http://elsewhere"
    with pytest.raises(TypeError):
        WEIGHTS["NEW"] = WEIGHTS["IMAGENET1K_V1"]
    with pytest.raises(WeightsError, match="sha256_prefix"):
        dataclasses.replace(WEIGHTS["IMAGENET1K_V1"], sha256_prefix="xyz")


def test_categories_are_the_imagenet_names():
    from npmobilenet.imagenet import categories

    names = WEIGHTS["IMAGENET1K_V2"].categories
    assert names == categories() and len(names) == 1000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMAGENET1K_V1", "IMAGENET1K_V1"),
        ("IMAGENET1K_V2", "IMAGENET1K_V2"),
        ("DEFAULT", "IMAGENET1K_V1"),
        ("MobileNet_V2_Weights.IMAGENET1K_V2", "IMAGENET1K_V2"),
        ("MobileNet_V2_Weights.DEFAULT", "IMAGENET1K_V1"),
        ("imagenet1k_v2", "IMAGENET1K_V2"),
    ],
)
def test_get_weights_spec_accepts_names_and_torchvision_spellings(name, expected):
    assert get_weights_spec(name) is WEIGHTS[expected]


def test_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(WeightsError, match="IMAGENET1K_V3") as info:
        get_weights_spec("IMAGENET1K_V3")
    for fragment in ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT", ".pth"):
        assert fragment in str(info.value)


def test_spec_for_path_goes_by_the_hash_prefix_in_the_file_name():
    assert spec_for_path("downloads/mobilenet_v2-7ebf99e0.pth") is WEIGHTS["IMAGENET1K_V2"]
    assert spec_for_path(Path("cache/mobilenet_v2-7ebf99e0.npz")) is WEIGHTS["IMAGENET1K_V2"]
    assert spec_for_path("mobilenet_v2-b0353104.pth") is WEIGHTS["IMAGENET1K_V1"]
    assert spec_for_path("my_finetuned.pth") is WEIGHTS[DEFAULT_WEIGHTS]


# --- where weights come from -----------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache in tmp_path, and no NPMOBILENET_WEIGHTS."""
    directory = tmp_path / "home"
    monkeypatch.setenv("NPMOBILENET_HOME", str(directory))
    monkeypatch.delenv("NPMOBILENET_WEIGHTS", raising=False)
    return directory


@pytest.fixture
def offline(monkeypatch):
    """A network that fails the test if anything tries to use it."""

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"the network was used: {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def marked_state(value):
    """A tiny state dict whose one value says where it came from."""
    return {"marker": np.array([value], dtype=np.float32)}


def came_from(state):
    return float(state["marker"][0])


def test_cache_dir_is_created_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("NPMOBILENET_HOME", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b" and cache_dir().is_dir()
    monkeypatch.delenv("NPMOBILENET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "npmobilenet" and cache_dir().is_dir()


def test_cached_weights_are_used_without_the_network(home, offline):
    save_npz(marked_state(1), cache_dir() / "mobilenet_v2-b0353104.npz")
    save_npz(marked_state(2), cache_dir() / "mobilenet_v2-7ebf99e0.npz")
    state, spec = resolve_weights()
    assert came_from(state) == 1 and spec is WEIGHTS["IMAGENET1K_V1"]
    state, spec = resolve_weights("IMAGENET1K_V2")
    assert came_from(state) == 2 and spec is WEIGHTS["IMAGENET1K_V2"]


def test_environment_beats_cache_and_argument_beats_environment(home, offline, tmp_path, monkeypatch):
    save_npz(marked_state(1), cache_dir() / "mobilenet_v2-b0353104.npz")
    save_npz(marked_state(2), cache_dir() / "mobilenet_v2-7ebf99e0.npz")
    from_env = tmp_path / "from_env-7ebf99e0.npz"
    save_npz(marked_state(3), from_env)
    argument = tmp_path / "argument.pth"
    save_torch_checkpoint(marked_state(4), argument)

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(from_env))
    state, spec = resolve_weights()
    assert came_from(state) == 3 and spec is WEIGHTS["IMAGENET1K_V2"]  # its name carries V2's hash

    for given in (argument, str(argument)):
        state, spec = resolve_weights(given)
        assert came_from(state) == 4 and spec is WEIGHTS[DEFAULT_WEIGHTS]
    state, spec = resolve_weights("IMAGENET1K_V2")
    assert came_from(state) == 2

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", "IMAGENET1K_V2")
    state, spec = resolve_weights()
    assert came_from(state) == 2 and spec is WEIGHTS["IMAGENET1K_V2"]

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", "")  # empty means unset
    state, spec = resolve_weights()
    assert came_from(state) == 1 and spec is WEIGHTS["IMAGENET1K_V1"]


def test_resolve_errors_name_the_path_or_the_variable(home, offline, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="does not exist") as info:
        resolve_weights(str(tmp_path / "missing.pth"))
    assert "missing.pth" in str(info.value)
    with pytest.raises(WeightsError, match="unknown weights 'IMAGENET1K_V9'") as info:
        resolve_weights("IMAGENET1K_V9")
    assert "IMAGENET1K_V1" in str(info.value)
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(tmp_path / "gone.npz"))
    with pytest.raises(WeightsError, match="NPMOBILENET_WEIGHTS=") as info:
        resolve_weights()
    assert "gone.npz" in str(info.value) and "does not exist" in str(info.value)


def test_a_damaged_cache_file_says_to_delete_it(home, offline):
    damaged = cache_dir() / "mobilenet_v2-b0353104.npz"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(WeightsError, match="delete it") as info:
        resolve_weights("IMAGENET1K_V1")
    assert str(damaged) in str(info.value)


# --- downloads, from a server on 127.0.0.1 ---------------------------------------------------------


class FileServer:
    """Serves ``routes[path] = (body, announced_length)`` over HTTP on 127.0.0.1 from a thread.

    When ``announced_length`` is larger than the body, the server sends the body and closes the
    connection, as a dropped download looks to the client.
    """

    def __init__(self):
        self.routes = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, announced = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server.server_address[1]

    def add(self, path, body, announced=None):
        """Serve ``body`` at ``path``; return its URL."""
        self.routes[path] = (body, len(body) if announced is None else announced)
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(monkeypatch):
    """A FileServer, reached directly even where a proxy is configured for the internet."""
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    server = FileServer()
    yield server
    server.close()


def tiny_checkpoint(torch):
    """A small torch.save file, its state dict, and the first 8 hex digits of its SHA-256."""
    state = OrderedDict([("features.0.0.weight", torch.randn(4, 3, 3, 3)), ("features.0.1.num_batches_tracked", torch.tensor(9))])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    return body, state, hashlib.sha256(body).hexdigest()[:8]


def served_spec(server, body, prefix, announced=None, sha256_prefix=None):
    """A registry entry for a file served under a name that carries ``prefix``, as torchvision names its files."""
    file_name = f"tiny-{prefix}.pth"
    return dataclasses.replace(
        WEIGHTS["IMAGENET1K_V1"],
        name="TINY",
        url=server.add(f"/models/{file_name}", body, announced),
        file_name=file_name,
        sha256_prefix=sha256_prefix or prefix,
    )


def test_download_checks_the_hash_and_caches_an_npz(torch, home, server, capsys):
    body, state, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body, prefix)
    path = download_weights(spec, progress=True)
    assert path == home / f"tiny-{prefix}.npz"
    assert listing(home) == [path.name]  # the .pth is gone, no temporary file is left
    assert_same_state(load_npz(path), state, owns_memory=False)
    progress = capsys.readouterr().err
    assert "100%" in progress and "MB" in progress
    download_weights(spec, progress=False)
    assert capsys.readouterr().err == ""


def test_resolve_downloads_once_then_uses_the_cache(torch, home, server, monkeypatch):
    body, state, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body, prefix)
    downloaded, returned_spec = resolve_weights(spec, progress=False)
    assert_same_state(downloaded, state, owns_memory=False)
    assert returned_spec is spec
    monkeypatch.setattr(urllib.request, "urlopen", None)  # any use of the network now fails
    cached, _ = resolve_weights(spec, progress=False)
    assert_same_state(cached, state, owns_memory=False)


def test_download_with_the_wrong_hash_caches_nothing(torch, home, server):
    body, _, prefix = tiny_checkpoint(torch)
    wrong = "0" * 8 if not prefix.startswith("0") else "f" * 8
    spec = served_spec(server, body, prefix, sha256_prefix=wrong)
    with pytest.raises(WeightsError, match="SHA-256") as info:
        download_weights(spec, progress=False)
    message = str(info.value)
    assert wrong in message and hashlib.sha256(body).hexdigest() in message and spec.url in message
    assert listing(home) == []


def test_a_dropped_connection_caches_nothing(torch, home, server):
    body, _, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body[: len(body) // 2], prefix, announced=len(body))
    with pytest.raises(WeightsError, match=f"stopped after {len(body) // 2} of {len(body)} bytes") as info:
        download_weights(spec, progress=False)
    assert spec.url in str(info.value)
    assert listing(home) == []


def test_a_verified_download_that_is_not_a_checkpoint_caches_nothing(home, server):
    body = b"<html>not a checkpoint</html>"
    prefix = hashlib.sha256(body).hexdigest()[:8]
    with pytest.raises(WeightsError, match="expected a PyTorch checkpoint"):
        download_weights(served_spec(server, body, prefix), progress=False)
    assert listing(home) == []


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["unreachable", "404"])
def test_network_failures_name_the_url_and_how_to_pass_a_local_file(home, server, failure):
    if failure == "unreachable":
        url = f"http://127.0.0.1:{free_port()}/models/mobilenet_v2-b0353104.pth"
    else:
        url = f"http://127.0.0.1:{server.port}/models/mobilenet_v2-b0353104.pth"  # not among its routes
    spec = dataclasses.replace(WEIGHTS["IMAGENET1K_V1"], url=url)
    with pytest.raises(WeightsError, match="could not download") as info:
        resolve_weights(spec, progress=False)
    message = str(info.value)
    for fragment in (url, "NPMOBILENET_WEIGHTS", "--weights", 'weights="path/to/mobilenet_v2-b0353104.pth"'):
        assert fragment in message, f"{message!r} does not mention {fragment!r}"
    assert listing(home) == []
