"""``npmobilenet bench``: the command runs and its table and JSON are well formed.

Nothing here checks a timing: only that every row is there, that the figures are positive, and
that the ratios follow from the medians. One test runs ``--quick`` end to end (about 20-30 s on
2 cores), one runs a tiny numpy-only benchmark with torch hidden; the rest are fast.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npmobilenet import bench
from npmobilenet.cli import main

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {"case", "kind", "batch", "numpy", "torch", "onnxruntime", "ratio", "onnx_ratio", "memory_ratio"}
SIDE_KEYS = {"samples_ms", "median_ms", "per_image_ms", "peak_mib"}
TOP_KEYS = {"schema", "config", "versions", "torch_available", "torch_missing_reason", "threads", "machine",
            "agreement", "memory_method", "rows", "total_seconds", "onnxruntime_available",
            "onnxruntime_missing_reason", "onnx_agreement"}
HIDE_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


def run_bench(*args, code=None, timeout=180):
    """``python -m npmobilenet bench ARGS`` (or ``python -c CODE``) from the repository root."""
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "npmobilenet", "bench"]
    env = {k: v for k, v in os.environ.items() if k != "NPMOBILENET_WEIGHTS"}
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env, check=False)


def table_rows(stdout):
    """``{(case, batch): cells}`` of the printed table."""
    rows = {}
    for name, _, _ in bench.LAYER_CASES + ((bench.EVAL_CASE, 0, 0), (bench.TRAIN_CASE, 0, 0)):
        for line in stdout.splitlines():
            match = re.match(rf"^{re.escape(name)}\s+(\d+)\s+(.*)$", line)
            if match:
                rows[name, int(match[1])] = match[2].split()
    return rows


def check_side(side, repeats, batch):
    assert set(side) == SIDE_KEYS
    assert len(side["samples_ms"]) == repeats
    assert all(sample > 0 for sample in side["samples_ms"])
    assert math.isclose(side["median_ms"], float(np.median(side["samples_ms"])))
    assert math.isclose(side["per_image_ms"], side["median_ms"] / batch)
    assert side["peak_mib"] is None or side["peak_mib"] >= 0


def check_report(report, expected_rows, with_torch):
    assert TOP_KEYS <= set(report)
    assert report["schema"] == bench.SCHEMA
    assert report["torch_available"] is with_torch
    assert report["memory_method"] in ("vmhwm", "tracemalloc")
    assert report["total_seconds"] > 0 and report["config"]["threads"] >= 1
    assert [(row["case"], row["batch"]) for row in report["rows"]] == expected_rows
    if with_torch:  # the two sides run the same network: logits agree (loosely: float32, any weights)
        assert report["agreement"]["relative_diff"] < 1e-3
    else:
        assert report["agreement"] is None
    with_onnx = report["onnxruntime_available"]
    assert with_onnx == (report["onnx_agreement"] is not None) == (report["onnxruntime_missing_reason"] is None)
    if with_onnx:  # ONNX Runtime runs the network torchvision exported: the same logits
        assert report["onnx_agreement"]["relative_diff"] < 1e-3
    for row in report["rows"]:
        assert set(row) == ROW_KEYS
        repeats = report["config"]["repeats"][row["kind"]]
        check_side(row["numpy"], repeats, row["batch"])
        if with_onnx and row["kind"] == "eval":  # inference only: ONNX Runtime does not train
            check_side(row["onnxruntime"], repeats, row["batch"])
            assert math.isclose(row["onnx_ratio"], row["numpy"]["median_ms"] / row["onnxruntime"]["median_ms"])
        else:
            assert row["onnxruntime"] is None and row["onnx_ratio"] is None
        if not with_torch:
            assert row["torch"] is None and row["ratio"] is None and row["memory_ratio"] is None
            continue
        check_side(row["torch"], repeats, row["batch"])
        assert math.isclose(row["ratio"], row["numpy"]["median_ms"] / row["torch"]["median_ms"])
        if row["memory_ratio"] is not None:
            assert math.isclose(row["memory_ratio"], row["numpy"]["peak_mib"] / row["torch"]["peak_mib"])
        if report["memory_method"] == "vmhwm" and row["kind"] != "layer":
            assert row["numpy"]["peak_mib"] > 0 and row["torch"]["peak_mib"] > 0


def test_quick_run_end_to_end(torch, onnxruntime, tmp_path, report):
    target = tmp_path / "bench.json"
    result = run_bench("--quick", "--json", target)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(target.read_text())
    quick = bench.QUICK
    expected = ([(bench.EVAL_CASE, b) for b in quick["eval_batches"]]
                + [(bench.TRAIN_CASE, b) for b in quick["train_batches"]]
                + [(name, quick["layer_batch"]) for name, _, _ in bench.LAYER_CASES])
    check_report(document, expected, with_torch=True)
    assert document["onnxruntime_available"] and document["versions"]["onnxruntime"] == onnxruntime.__version__
    assert document["config"]["repeats"] == quick["repeats"] and document["config"]["quick"] is True
    assert document["versions"]["torch"] == torch.__version__

    printed = table_rows(result.stdout)
    assert sorted(printed) == sorted(expected)
    for row in document["rows"]:
        cells = printed[row["case"], row["batch"]]
        assert len(cells) == len(bench.COLUMNS) - 2  # the case and the batch are matched apart
        assert float(cells[4]) == pytest.approx(row["ratio"], abs=0.006)  # printed with 2 decimals
        if row["kind"] == "eval":
            assert float(cells[5]) == pytest.approx(row["onnx_ratio"], abs=0.006)
        else:
            assert cells[2] == cells[5] == "n/a"
    header = result.stdout.split("\n\n")[0]
    for fragment in ("torch " + torch.__version__, "threads: torch", "numpy BLAS", "CPUs", "median",
                     "second reference: onnxruntime " + document["versions"]["onnxruntime"]):
        assert fragment in header
    report(f"npmobilenet bench --quick: {document['total_seconds']:.1f} s, memory by {document['memory_method']}")


def test_numpy_only_when_torch_is_missing(tmp_path):
    target = tmp_path / "numpy-only.json"
    code = HIDE_TORCH + "from npmobilenet.cli import main; sys.exit(main(sys.argv[1:]))"
    result = run_bench("bench", "--eval-batches", "1", "--train-batches", "1", "--no-layers", "--repeats", "1",
                       "--warmup", "0", "--json", target, "--markdown", code=code)
    assert result.returncode == 0, result.stderr
    document = json.loads(target.read_text())
    check_report(document, [(bench.EVAL_CASE, 1), (bench.TRAIN_CASE, 1)], with_torch=False)
    assert "torch not available" in result.stdout
    assert re.search(r"^\| training step \| 1 \| [\d.]+ \| n/a \|", result.stdout, re.MULTILINE), result.stdout


# --- bad options: one line ``error: ...``, status 2, nothing written ------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--eval-batches", "0"], "at least 1"),
    (["--eval-batches", "1,x"], "1,x"),
    (["--train-batches", ""], "batch sizes"),
    (["--train-batches", "8,8"], "twice"),
    (["--repeats", "-1"], "positive integer"),
    (["--warmup", "-1"], "at least 0"),
    (["--threads", "0"], "positive integer"),
    (["--layer-batch", "0"], "positive integer"),
    (["--json", "no/such/folder/out.json"], "--json"),
    (["--weights", "no-such-file.pth"], "no-such-file.pth"),
])
def test_bad_options(capsys, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NPMOBILENET_WEIGHTS", raising=False)
    target = tmp_path / "out.json"
    try:
        status = main(["bench", *args, *(["--json", str(target)] if "--json" not in args else [])])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


def test_bad_option_on_the_console(tmp_path):
    target = tmp_path / "out.json"
    result = run_bench("--eval-batches", "1,,8", "--json", target, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert not target.exists()


# --- the helpers -------------------------------------------------------------------------------


def test_parse_batches():
    assert bench.parse_batches("1,8,32") == (1, 8, 32)
    assert bench.parse_batches(" 8 , 1 ") == (8, 1)
    for text in ("", ",", "0", "-1", "1,,8", "a", "1.5", "8,8"):
        with pytest.raises(ValueError):
            bench.parse_batches(text)


def test_parse_count():
    assert bench.parse_count("3") == 3 and bench.parse_count("0", minimum=0) == 0
    for text, minimum in (("0", 1), ("-1", 0), ("x", 0), ("", 0)):
        with pytest.raises(ValueError):
            bench.parse_count(text, minimum)


def test_make_config_defaults_and_overrides():
    full, quick = bench.make_config(), bench.make_config(quick=True)
    assert full.eval_batches == (1, 8, 32) and full.train_batches == (8, 32)
    assert full.repeats == {"eval": 5, "train": 3, "layer": 5}
    assert quick.eval_batches == (1, 8) and quick.train_batches == (8,) and quick.layer_batch == 2
    chosen = bench.make_config(quick=True, eval_batches=(4,), repeats=7, layers=False)
    assert chosen.eval_batches == (4,) and chosen.repeats == {"eval": 7, "train": 7, "layer": 7}
    assert chosen.layer_batch is None
    for bad in ({"repeats": 0}, {"warmup": -1}, {"threads": 0}, {"eval_batches": ()}, {"memory": "x"}):
        with pytest.raises(ValueError):
            bench.make_config(**bad)


@pytest.mark.parametrize("method", ["vmhwm", "tracemalloc"])
def test_peak_memory_of_a_64_mib_array(method):
    if method == "vmhwm" and bench.memory_method("auto") != "vmhwm":
        pytest.skip("/proc/self/clear_refs is not usable here: the run falls back to tracemalloc")

    def allocate():
        array = np.ones(64 * bench.MIB // 8)
        del array

    assert 60 < bench.measure_peak_mib(allocate, method) < 80
    assert bench.measure_peak_mib(lambda: None, method) < 4


def test_import_does_not_pull_in_torch():
    code = "import sys, npmobilenet.bench, npmobilenet.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_profile_lists_where_the_time_goes_for_both_steps():
    import io

    out = io.StringIO()
    assert main(["bench", "--profile", "--eval-batches", "1", "--train-batches", "2"], out=out) == 0
    text = out.getvalue()
    sections = re.findall(r"^(inference \(eval, no_grad\), batch 1|training step, batch 2): ([\d.]+) ms", text, re.MULTILINE)
    assert [name for name, _ in sections] == ["inference (eval, no_grad), batch 1", "training step, batch 2"]
    rows = re.findall(r"^\s+([\d.]+)\s+([\d.]+)%\s+(\d+)\s+(\S+)", text, re.MULTILINE)
    assert len(rows) == 2 * 14
    assert any("add_taps" in function for *_, function in rows)  # the depthwise convolution shows up
    assert all(0 <= float(share) <= 100 for _, share, _, _ in rows)


def test_profile_refuses_json(tmp_path, capsys):
    assert main(["bench", "--profile", "--json", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err.startswith("error: --profile")
    assert not (tmp_path / "p.json").exists()
