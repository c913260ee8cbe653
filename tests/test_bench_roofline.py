"""``npmobilenet bench --roofline PLOT.png``: the limits, the floors, the table, the JSON and the picture.

No timing is checked: only that every kind is there, that the figures are positive and follow
from one another (multiple = time / floor, GFLOP/s = flops / time), and that the PNG is a PNG.
The flop and byte counts are checked against sums done here by hand. One test runs the command
end to end (a small benchmark plus the roofline, about 15-25 s on 2 cores); the rest are fast.
"""

import io
import json
import math
import re

import numpy as np
import pytest

from npmobilenet import nn
from npmobilenet.bench import make_config
from npmobilenet.bench import roofline as rl
from npmobilenet.bench.layer_times import module_name, numpy_layer_times
from npmobilenet.cli import main
from npmobilenet.grad_mode import no_grad
from npmobilenet.models import MobileNetV2

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# MobileNetV2: 17 blocks, 16 with an expansion, 4 with a stride-2 depthwise conv
LAYER_COUNTS = {"stem conv 3x3/2": 1, "1x1 expand": 16, "depthwise 3x3/1": 13, "depthwise 3x3/2": 4,
                "1x1 project": 17, "1x1 conv to 1280": 1, "pool + classifier": 1}
FAKE_LIMITS = {"threads": 1, "matmul_gflops": 50.0, "bandwidth_gbs": 10.0, "ridge_flop_per_byte": 5.0,
               "matmul": {"n": 2048, "samples_ms": [1.0]}, "copy": {"mib": 256, "threads": 1, "samples_ms": [1.0]}}


def table_lines(text, column):
    """``{kind: cells}`` of the table whose header (a line starting with "kind") names ``column``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("kind ") and column in line)
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        if line.startswith("---"):
            continue
        kind = next(k for k in [*rl.KINDS, rl.ALL] if line.startswith(k + "  "))
        rows[kind] = line[len(kind):].split()
    return rows


# --- the flop and byte accounting, by hand ------------------------------------------------------


def test_conv_cost_by_hand():
    batch = 2
    pointwise = nn.Conv2d(24, 144, 1, bias=False)  # a 1x1 expansion at 56x56
    shape, mult_adds, moved = rl.conv_cost(pointwise, (batch, 24, 56, 56))
    assert shape == (batch, 144, 56, 56)
    assert mult_adds == batch * 56 * 56 * 144 * 24  # every output pixel: 24 multiply-adds per channel
    assert moved == 4 * (batch * 24 * 56 * 56 + 144 * 24 + 144 + batch * 144 * 56 * 56)  # in, weights + bias, out
    _, _, with_sum = rl.conv_cost(pointwise, (batch, 24, 56, 56), residual=True)
    assert with_sum == moved + 4 * batch * 144 * 56 * 56  # the residual read once more

    depthwise = nn.Conv2d(96, 96, 3, stride=2, padding=1, groups=96, bias=False)  # at 112x112, stride 2
    shape, mult_adds, moved = rl.conv_cost(depthwise, (batch, 96, 112, 112))
    assert shape == (batch, 96, 56, 56)
    assert mult_adds == batch * 56 * 56 * 96 * 9  # 9 multiply-adds per output, one channel each
    assert moved == 4 * (batch * 96 * 112 * 112 + 96 * 9 + 96 + batch * 96 * 56 * 56)
    # the intensities the module docstring quotes: about 10 for 24 -> 144, 0.9 for the depthwise at stride 2
    assert 2 * mult_adds / moved == pytest.approx(0.9, abs=0.01)


def test_network_layers_follow_the_model():
    model = MobileNetV2(seed=0)
    layers = rl.network_layers(model, batch=3)
    assert {kind: sum(layer.kind == kind for layer in layers) for kind in rl.KINDS} == LAYER_COUNTS
    summary = model.summary(input_size=(3, 3, 224, 224), file=io.StringIO())
    pooling = 3 * 1280 * 7 * 7  # one multiply-add (by 1/49) per pooled value: the summary counts none
    assert sum(layer.mult_adds for layer in layers) == summary.total_mult_adds + pooling
    assert all(layer.bytes > 0 and layer.mult_adds > 0 for layer in layers)
    modules = dict(model.named_modules())
    assert all(name in modules for layer in layers for _, name in (layer.start, layer.end))


def test_onnx_node_names_give_the_module():
    assert module_name("/features/features.3/conv/conv.2/Conv_output_0_nchwc") == "features.3.conv.2"
    assert module_name("/features/features.1/conv/conv.0/conv.0.2/Clip_output_0_nchwc") == "features.1.conv.0.2"
    assert module_name("/features/features.0/features.0.2/Clip_output_0_nchwc") == "features.0.2"
    assert module_name("/classifier/classifier.1/Gemm") == "classifier.1"
    assert module_name("/GlobalAveragePool_output_0_nchwc") == ""
    assert module_name("ReorderOutput") == ""


def test_numpy_layer_times_leave_the_model_as_it_was():
    model = MobileNetV2(seed=0).eval()
    images = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    with no_grad():
        expected = model(images)
    times = numpy_layer_times(model, rl.network_layers(model, 1, image_size=96), images, warmup=0, repeats=1)
    assert set(times["kinds"]) == set(rl.KINDS)
    assert all(kind["median_ms"] > 0 for kind in times["kinds"].values())
    assert times["whole_ms"] >= sum(kind["median_ms"] for kind in times["kinds"].values())
    assert not any("forward" in vars(module) for module in model.modules())  # the marks are gone
    with no_grad():
        np.testing.assert_array_equal(model(images), expected)


def test_without_torch_only_numpy(monkeypatch, tmp_path):
    monkeypatch.setattr(rl, "import_torch", lambda: (None, None, "ImportError: hidden by the test"))
    monkeypatch.setattr(rl, "measure_limits", lambda threads, quick: FAKE_LIMITS)  # the limits are not the point
    config = make_config(eval_batches=(1,), repeats=1, warmup=0, layers=False, quick=True)
    roofline = rl.run_roofline(config, threads=1)
    assert roofline["missing"] == {"torch": "ImportError: hidden by the test",
                                   "onnxruntime": "needs torch to export the model"}
    for row in [*roofline["kinds"], roofline["total"]]:
        assert row["numpy"]["median_ms"] > 0 and row["torch"] is None and row["onnxruntime"] is None
    text = rl.format_roofline(roofline)
    assert "torch: n/a, ImportError: hidden by the test" in text
    times = table_lines(text, "numpy ms")
    assert all(cells[3:] == ["n/a"] * 6 for cells in times.values())
    target = tmp_path / "numpy-only.png"
    rl.plot_roofline(roofline, target)
    assert target.read_bytes()[:8] == PNG_MAGIC


# --- the command ---------------------------------------------------------------------------------


def test_roofline_end_to_end(torch, tmp_path, capsys, report):
    plot, target = tmp_path / "roofline.png", tmp_path / "bench.json"
    args = ["bench", "--quick", "--no-layers", "--eval-batches", "1", "--train-batches", "1", "--repeats", "1",
            "--roofline", str(plot), "--json", str(target)]
    out = io.StringIO()
    assert main(args, out=out) == 0, capsys.readouterr().err
    text = out.getvalue()
    roofline = json.loads(target.read_text())["roofline"]

    # the JSON: every kind, in order, with costs and floors that follow from the limits
    limits = roofline["limits"]
    assert limits["matmul_gflops"] > 0 and limits["bandwidth_gbs"] > 0 and roofline["batch"] == 1
    assert [row["kind"] for row in roofline["kinds"]] == list(rl.KINDS)
    assert {row["kind"]: row["layers"] for row in roofline["kinds"]} == LAYER_COUNTS
    assert not roofline["missing"], roofline["missing"]  # torch (the fixture) and onnxruntime are installed
    for row in [*roofline["kinds"], roofline["total"]]:
        floor = max(row["flops"] / limits["matmul_gflops"], row["bytes"] / limits["bandwidth_gbs"]) / 1e6
        assert row["floor_ms"] == pytest.approx(floor) and row["floor_ms"] > 0
        assert row["intensity"] == pytest.approx(row["flops"] / row["bytes"])
        for side in rl.SIDES:
            figures = row[side]
            assert figures["median_ms"] > 0 and math.isfinite(figures["multiple"]) and figures["multiple"] > 0
            assert figures["multiple"] == pytest.approx(figures["median_ms"] / row["floor_ms"])
            assert figures["gflops"] == pytest.approx(row["flops"] / figures["median_ms"] / 1e6)

    # the table: both parts, every kind, numbers that parse and match the JSON
    assert "roofline: inference (eval) at batch 1" in text and "compute roof" in text and "memory roof" in text
    costs, times = table_lines(text, "floor ms"), table_lines(text, "numpy ms")
    assert list(costs) == list(times) == [*rl.KINDS, rl.ALL]
    for row in [*roofline["kinds"], roofline["total"]]:
        layers, mflop, mb, intensity, bound, floor_ms = costs[row["kind"]]
        assert int(layers) == row["layers"] and bound == row["bound"]
        assert float(floor_ms) == pytest.approx(row["floor_ms"], rel=0.05, abs=0.006)
        assert float(mflop) == pytest.approx(row["flops"] / 1e6, rel=0.01)
        cells = [float(cell) for cell in times[row["kind"]]]
        assert len(cells) == 9 and all(cell > 0 for cell in cells)
    assert f"wrote {plot}" in text

    # the picture
    data = plot.read_bytes()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(str(plot)).shape
    assert width >= 600 and height >= 400
    report(f"bench --roofline: compute roof {limits['matmul_gflops']:.0f} GFLOP/s, memory roof "
           f"{limits['bandwidth_gbs']:.1f} GB/s")


@pytest.mark.parametrize("name, fragment", [
    ("no/such/folder/roofline.png", "existing folder"),
    ("roofline.jpg", ".png"),
    ("roofline", ".png"),
])
def test_bad_plot_path(capsys, tmp_path, monkeypatch, name, fragment):
    monkeypatch.chdir(tmp_path)
    status = main(["bench", "--quick", "--roofline", name])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and re.match(r"error: --roofline", lines[0]) and fragment in lines[0], captured.err
    assert list(tmp_path.iterdir()) == []


def test_roofline_with_profile_is_refused(capsys, tmp_path):
    status = main(["bench", "--profile", "--roofline", str(tmp_path / "roofline.png")])
    assert status == 2 and "--roofline" in capsys.readouterr().err
