"""Torch checkpoints read and written without torch (npmobilenet.io.torch_load and torch_save),
and the allow-list that refuses pickled code.

Every checkpoint read here is written in the test by ``torch.save`` itself (both of its
formats), and every checkpoint written by npmobilenet is read back by ``torch.load`` with
``weights_only=True``: torch is the judge on both sides.
"""

import os
import pickle
import struct
import subprocess
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from checkpoint_helpers import assert_same_state, listing, numpy_state, torch_save

import npmobilenet.io.torch_load as reader
import npmobilenet.io.torch_save as writer
from npmobilenet.errors import UnsafeCheckpointError, WeightsError
from npmobilenet.io import load_npz, load_state_dict_file, load_torch_checkpoint, save_npz, save_torch_checkpoint

FORMATS = ["zip", "legacy"]


# --- helpers -------------------------------------------------------------------------------


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
        path.write_bytes(legacy_file(reader.LEGACY_MAGIC_NUMBER, reader.LEGACY_PROTOCOL_VERSION, payload, {}, []))
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
    stride_3 = writer._op_tuple([writer._op_int(3), writer._op_int(1)])
    assert data_pkl.count(stride_3) == 1
    bad = rewrite_zip(path, tmp_path / "bad.pth", lambda name, data: data.replace(stride_3, writer._op_tuple([writer._op_int(30), writer._op_int(1)])))
    with pytest.raises(WeightsError, match="reaches element 32 of storage 0, which has only 6 elements"):
        load_torch_checkpoint(bad)


def test_malformed_records_in_the_pickle_are_weights_errors_naming_the_file(tmp_path):
    """Records that only name allowed globals, but with arguments no torch.save writes."""
    ordered_dict = writer._op_call(writer._op_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE)
    rebuild = writer._op_global("torch._utils", "_rebuild_tensor_v2")
    one = writer._op_tuple([writer._op_int(1)])
    not_a_storage = writer._op_call(rebuild, writer._op_tuple([writer._op_str("a string"), writer._op_int(0), one, one]))
    bad_persistent_id = writer._op_tuple([writer._op_str("module"), writer._op_str("x")]) + pickle.BINPERSID
    cases = {"expected a storage, found str": not_a_storage, "expected persistent ids": bad_persistent_id}
    for fragment, value in cases.items():
        data_pkl = pickle.PROTO + b"\x02" + ordered_dict + pickle.MARK + writer._op_str("w") + value + pickle.SETITEMS + pickle.STOP
        path = tmp_path / "odd.pth"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data_pkl)
        with pytest.raises(WeightsError, match=fragment) as info:
            load_torch_checkpoint(path)
        assert str(path) in str(info.value) and not isinstance(info.value, UnsafeCheckpointError)


def load_zip_record(path, name):
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)
