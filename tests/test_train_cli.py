"""``npmobilenet train`` and ``npmobilenet evaluate``: on a tiny folder, on ants and bees, and their bad input."""

import json

import numpy as np
import pytest
from test_cli import run_main as run
from test_train import image_folder

from npmobilenet import train
from npmobilenet.io import save_npz


@pytest.fixture
def tiny_dataset(tmp_path):
    """``train/`` and ``val/`` of two classes of random 64x64 pictures, and MobileNetV2 weights to start from."""
    image_folder(tmp_path / "data" / "train", per_class=4, size=(64, 64))
    image_folder(tmp_path / "data" / "val", per_class=2, size=(64, 64))
    import npmobilenet

    weights = tmp_path / "start.npz"
    save_npz(npmobilenet.MobileNetV2(seed=0).state_dict(), weights)
    return tmp_path / "data", weights


def test_train_then_evaluate_then_predict_on_a_tiny_folder(capsys, tmp_path, tiny_dataset):
    data, weights = tiny_dataset
    out = tmp_path / "run.pth"
    status, stdout, stderr = run(capsys, "train", data, "--epochs", 2, "--batch-size", 4, "--freeze-backbone",
                                 "--weights", weights, "--out", out, "--workers", 0)
    assert status == 0, stderr
    assert f"wrote {out}: 2 epochs" in stdout
    assert "epoch 2/2  train loss" in stderr and "a new classifier, 2,562 parameters learn" in stderr
    saved = train.load_checkpoint(out)
    assert saved["epoch"] == 2 and saved["class_names"] == ["a", "b"]

    status, stdout, stderr = run(capsys, "evaluate", data, "--weights", out, "--json")
    assert status == 0, stderr
    report = json.loads(stdout)
    assert report["images"] == 4 and report["classes"] == ["a", "b"]
    assert np.sum(report["confusion_matrix"]) == 4
    assert report["accuracy"] == pytest.approx(np.trace(report["confusion_matrix"]) / 4)

    status, stdout, _ = run(capsys, "evaluate", data, "--weights", out)
    assert status == 0 and "confusion matrix (rows: true class, columns: predicted)" in stdout

    status, stdout, _ = run(capsys, "predict", data / "val" / "a" / "0.png", "--weights", out, "--topk", 2)
    assert status == 0 and " a" in stdout and " b" in stdout


def test_train_resumes_where_it_stopped(capsys, tmp_path, tiny_dataset):
    data, weights = tiny_dataset
    common = ["--batch-size", 4, "--freeze-backbone", "--weights", weights, "--workers", 0]
    straight, stopped = tmp_path / "straight.pth", tmp_path / "stopped.pth"
    assert run(capsys, "train", data, "--epochs", 2, "--out", straight, *common)[0] == 0
    assert run(capsys, "train", data, "--epochs", 1, "--out", stopped, *common)[0] == 0
    assert run(capsys, "train", data, "--epochs", 2, "--out", stopped, "--resume", stopped, *common)[0] == 0
    for name, value in train.load_checkpoint(straight)["model"].items():
        np.testing.assert_array_equal(train.load_checkpoint(stopped)["model"][name], value, err_msg=name)


@pytest.mark.parametrize("args, message", [
    (["train", "{missing}"], "no such folder"),
    (["train", "{data}", "--epochs", "0"], "--epochs"),
    (["train", "{data}", "--lr", "-1"], "--lr"),
    (["train", "{data}", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "{data}", "--train-blocks", "2"], "--train-blocks goes with --freeze-backbone"),
    (["train", "{data}", "--freeze-backbone", "--train-blocks", "40", "--weights", "{weights}"], "train_blocks between 0 and 19"),
    (["train", "{data}", "--weights", "{weights}", "--resume", "{missing}"], "missing"),
    (["evaluate", "{data}"], "--weights"),
    (["evaluate", "{data}", "--weights", "{weights}"], "are not the ones the weights"),
    (["evaluate", "{missing}", "--weights", "{weights}"], "no such folder"),
])
def test_bad_arguments_and_folders_give_one_error_line(capsys, tmp_path, tiny_dataset, args, message):
    data, weights = tiny_dataset
    values = {"data": data, "weights": weights, "missing": tmp_path / "missing"}
    status, stdout, stderr = run(capsys, *[arg.format(**values) for arg in args])
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr, stderr
    assert not (tmp_path / "checkpoint.pth").exists()


def test_ants_and_bees_short_run(capsys, tmp_path, shared_dir, report):
    """The README's recipe in short: one epoch of the new classifier on ants and bees, then evaluate.

    The full run (10 epochs: 0.93 or more) is the benchmark's; one epoch already lifts a frozen
    ImageNet network far above chance (0.5) on the validation images.
    """
    weights = shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"
    data = shared_dir / "datasets" / "hymenoptera"
    out = tmp_path / "ants.pth"
    status, stdout, stderr = run(capsys, "train", data, "--epochs", 1, "--freeze-backbone", "--weights", weights,
                                 "--out", out, "--workers", 2)
    assert status == 0, stderr
    status, stdout, stderr = run(capsys, "evaluate", data, "--weights", out, "--json")
    result = json.loads(stdout)
    assert result["images"] == 153 and result["classes"] == ["ants", "bees"]
    assert result["accuracy"] >= 0.8, result
    report(f"ants and bees, 1 epoch of the classifier: validation accuracy {result['accuracy']:.3f}")
