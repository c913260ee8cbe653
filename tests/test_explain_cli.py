"""``npmobilenet explain``: one PNG per image, and for bad input one ``error:`` line, status 2 and no PNG.

In-process through ``main([...])``, one case in a real console, with tests/test_cli.py's helpers
and its isolation (an empty cache, no reachable download URL, the repository as working folder).
The weights are the shared ones, passed with ``--weights``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_cli import (  # noqa: F401  (isolated, dead_port, weights_path, shared_photo: fixtures)
    CHELSEA,
    REPO,
    assert_one_error_line,
    dead_port,
    isolated,
    predict_module,
    run_main,
    shared_photo,
    weights_path,
)

from npmobilenet import explain

PICTURE_SIZE = (400, 360)  # plot_heatmap's 4 x 3.6 inches at 100 dots per inch


@pytest.fixture(autouse=True)
def no_windows():
    pytest.importorskip("matplotlib").use("Agg")


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# --- pictures -------------------------------------------------------------------------------------


def test_one_png_per_image(capsys, tmp_path, weights_path, shared_photo):
    out = tmp_path / "new" / "folder"  # made when missing
    status, stdout, stderr = run_main(capsys, "explain", CHELSEA, shared_photo, "--out", out, "--weights", weights_path)
    assert status == 0 and stderr == "", stderr
    expected = [out / "chelsea-gradcam.png", out / "n02128925_jaguar-gradcam.png"]
    lines = stdout.splitlines()
    assert len(lines) == 2
    for line, path, image in zip(lines, expected, [CHELSEA, shared_photo]):
        assert line.startswith(f"wrote {path} (gradcam, class ") and line.endswith(f"for {image}")
        assert png_size(path) == PICTURE_SIZE and path.stat().st_size > 20_000
    assert "class 285 Egyptian cat" in lines[0]
    assert sorted(os.listdir(out)) == sorted(path.name for path in expected)


@pytest.mark.parametrize("method, extra", [
    ("gradcam++", ["--layer", "features.14"]),
    ("hirescam", ["--target", "281"]),
    ("saliency", []),
    ("guided-gradcam", ["--layer", "features.18.0"]),
])
def test_methods_layers_and_targets(capsys, tmp_path, weights_path, method, extra):
    status, stdout, stderr = run_main(capsys, "explain", CHELSEA, "--method", method, *extra, "--out", tmp_path,
                                      "--weights", weights_path)
    assert status == 0 and stderr == "", stderr
    path = tmp_path / f"chelsea-{method}.png"
    assert stdout.startswith(f"wrote {path} ({method}, class {281 if '--target' in extra else 285} ")
    assert png_size(path) == PICTURE_SIZE


@pytest.mark.parametrize("method", ["smoothgrad", "integrated-gradients", "occlusion"])
def test_the_slow_methods_run_through_the_command(capsys, monkeypatch, tmp_path, weights_path, method):
    """Wired as the others, with their work cut down (2 samples, 2 steps, 4 patches): the command is what is tested."""
    cheap = {
        "smoothgrad": lambda model, x, target, layer: explain.smooth_grad(model, x, target, samples=2),
        "integrated-gradients": lambda model, x, target, layer: explain.integrated_gradients(model, x, target, steps=2).attributions,
        "occlusion": lambda model, x, target, layer: explain.occlusion(model, x, target, patch=112, stride=112),
    }
    monkeypatch.setitem(explain.METHODS, method, cheap[method])
    status, stdout, stderr = run_main(capsys, "explain", CHELSEA, "--method", method, "--out", tmp_path,
                                      "--weights", weights_path)
    assert status == 0 and stderr == "", stderr
    assert png_size(tmp_path / f"chelsea-{method}.png") == PICTURE_SIZE


def test_the_same_name_twice_gets_two_files(capsys, tmp_path, weights_path):
    status, stdout, _ = run_main(capsys, "explain", CHELSEA, f"./{CHELSEA}", "--out", tmp_path / "out", "--weights",
                                 weights_path)
    assert status == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["chelsea-2-gradcam.png", "chelsea-gradcam.png"]


# --- bad input: one error line, status 2, no PNG ---------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["no-such-photo.jpg"], ["no-such-photo.jpg", "no such file"]),
    ([CHELSEA, "no-such-photo.jpg"], ["no-such-photo.jpg"]),
    ([CHELSEA, "--method", "lime"], ["--method", "invalid choice: 'lime'", "gradcam++"]),
    ([CHELSEA, "--layer", "features.19"], ["unknown layer 'features.19'", "features.0 .. features.18"]),
    ([CHELSEA, "--layer", "features.18.7"], ["unknown layer 'features.18.7'", "features.18.2"]),
    ([CHELSEA, "--target", "1000"], ["target", "between 0 and 999", "1000"]),
    ([CHELSEA, "--target", "-1"], ["--target", "0 or more", "'-1'"]),
    ([CHELSEA, "--target", "cat"], ["--target", "'cat'"]),
    ([CHELSEA, "--method", "saliency", "--layer", "features.14"], ["--layer", "saliency"]),
    ([CHELSEA, "--weights", "no-such-weights.pth"], ["no-such-weights.pth"]),
    ([], ["IMAGE"]),
])
def test_bad_input_gives_one_error_line_and_no_png(capsys, tmp_path, weights_path, args, words):
    out = tmp_path / "out"
    out.mkdir()
    weights = [] if "--weights" in args else ["--weights", weights_path]
    status, stdout, stderr = run_main(capsys, "explain", *args, "--out", out, *weights)
    assert_one_error_line(status, stdout, stderr, *words)
    assert os.listdir(out) == []


def test_out_is_a_file(capsys, tmp_path, weights_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep")
    status, stdout, stderr = run_main(capsys, "explain", CHELSEA, "--out", out, "--weights", weights_path)
    assert_one_error_line(status, stdout, stderr, out, "folder")
    assert out.read_bytes() == b"keep"


def test_a_failed_write_leaves_no_partial_png(capsys, monkeypatch, tmp_path, weights_path):
    from matplotlib.figure import Figure

    def half_then_fail(self, file, **kwargs):
        file.write(b"\x89PNG half of a picture")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    out = tmp_path / "out"
    status, stdout, stderr = run_main(capsys, "explain", CHELSEA, "--out", out, "--weights", weights_path)
    assert_one_error_line(status, stdout, stderr, "No space left on device")
    assert os.listdir(out) == []


def test_in_a_real_console(tmp_path, weights_path):
    def run(*args):
        env = {**os.environ, "NPMOBILENET_HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg"}
        return subprocess.run([sys.executable, "-m", "npmobilenet", "explain", *map(str, args)], capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=300, check=False)

    result = run(CHELSEA, "--out", tmp_path / "pictures", "--weights", weights_path, "--layer", "features.14")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert png_size(tmp_path / "pictures" / "chelsea-gradcam.png") == PICTURE_SIZE
    result = run(CHELSEA, tmp_path / "missing.jpg", "--out", tmp_path / "none", "--weights", weights_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ") and "missing.jpg" in result.stderr
    assert not (tmp_path / "none").exists()


def test_the_model_predict_uses_is_left_as_it_was(capsys, tmp_path, weights_path):
    model = predict_module.load_model(weights_path)
    before = {name: p.grad.copy() for name, p in model.named_parameters()}
    for method in ("gradcam", "guided-gradcam"):
        assert run_main(capsys, "explain", CHELSEA, "--method", method, "--out", tmp_path, "--weights", weights_path)[0] == 0
    assert predict_module.load_model(weights_path) is model and not model.training
    assert all(np.array_equal(p.grad, before[name]) for name, p in model.named_parameters())
    assert all(module.cache is None for module in model.modules())
    assert not any(getattr(module, "guided", False) for module in model.modules())
