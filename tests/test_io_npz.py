""".npz files (npmobilenet.io.npz), and reading any weights file by its content
(npmobilenet.io.any_format)."""

import numpy as np
import pytest
from checkpoint_helpers import listing, numpy_state, torch_save

from npmobilenet.errors import WeightsError
from npmobilenet.io import load_npz, load_state_dict_file, save_npz, save_torch_checkpoint


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
