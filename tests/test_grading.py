"""The autograder (``npmobilenet.grading``) and the assignments (``tutorials/assignments``).

What CI proves here: every solution notebook scores full marks; every generated student
notebook runs and scores zero, each check saying the function is not written yet; each wrong
solution below (a mistake students really make, as a text patch of the solution) loses exactly
the checks it should, with a hint that names the mistake, and keeps the others; the committed
student notebooks are what ``npmobilenet assignments generate`` makes today; the solutions are
what nbgrader accepts; a notebook that raises, loops forever, prints megabytes, exits or defines
nothing gets a score and a message; the command's JSON, and its errors.

The solution and student notebooks are graded as the command grades them, in a fresh process,
once each (the ``graded`` fixture). The wrong solutions are graded in this process
(``grade_in_this_process``, the same code without a process to start each time).
"""

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from npmobilenet.grading import ASSIGNMENTS, load_assignment, runner
from npmobilenet.grading.checks import CheckFailed
from npmobilenet.grading.cli import main
from npmobilenet.grading.compare import expect_close
from npmobilenet.grading.notebook import assignment_of, cell_source, read_notebook, set_cell_source, write_notebook
from npmobilenet.grading.report import format_table
from npmobilenet.grading.runner import grade, grade_in_this_process

ASSIGNMENTS_DIR = Path(__file__).resolve().parents[1] / "tutorials" / "assignments"
A1, A2 = "01-conv2d-relu6", "02-depthwise-batchnorm"


def solution_path(assignment):
    return ASSIGNMENTS_DIR / assignment / "solution.ipynb"


@pytest.fixture(scope="module")
def graded():
    """``graded(assignment, "solution" or "student")``: that notebook graded by ``grade``, once per module."""
    results = {}

    def get(assignment, kind):
        if (assignment, kind) not in results:
            results[assignment, kind] = grade(ASSIGNMENTS_DIR / assignment / f"{kind}.ipynb")
        return results[assignment, kind]

    return get


def lost(result):
    """The ids of the checks that did not earn their points."""
    return {check["id"] for check in result["checks"] if check["score"] < check["points"]}


# --- the assignments as committed ----------------------------------------------------------------------


def test_every_assignment_folder_has_its_checks_and_names_itself():
    folders = sorted(path.parent.name for path in ASSIGNMENTS_DIR.glob("*/solution.ipynb"))
    assert folders == sorted(ASSIGNMENTS)
    for name in folders:
        assert assignment_of(read_notebook(solution_path(name))) == name
        assert load_assignment(name).ID == name


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_solution_scores_full_marks(graded, assignment):
    result = graded(assignment, "solution")
    assert {check["id"]: check["hint"] for check in result["checks"] if check["hint"]} == {}
    assert result["status"] == "graded" and result["notes"] == []  # every cell ran, the hidden tests passed
    assert result["score"] == result["max_score"] == 100


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_student_version_runs_and_scores_zero(graded, assignment):
    result = graded(assignment, "student")
    assert result["status"] == "graded" and result["score"] == 0
    for check in result["checks"]:
        assert check["hint"].endswith("is not written yet: it raises NotImplementedError"), check
    # the only cells that fail are the test cells, calling functions not written yet
    assert result["notes"]
    assert all("NotImplementedError" in note and note.endswith("(a task not done yet)") for note in result["notes"])
    table = format_table(result)
    assert "score: 0/100" in table and "What to fix:" in table and "Running the notebook:" in table


def test_the_score_table_of_a_solution(graded):
    table = format_table(graded(A1, "solution"))
    assert table.startswith(f"{solution_path(A1)}: assignment 01-conv2d-relu6, ")
    assert "  1. ReLU6, forward and backward  (10/10)" in table
    assert "     2/2  ok   relu6_backward: dx is 0 at x = 0 and x = 6, as PyTorch's" in table
    assert "score: 100/100" in table and "What to fix" not in table


def test_the_committed_student_notebooks_are_what_generate_makes_today(capsys):
    assert main(["assignments", "generate", "--check", str(ASSIGNMENTS_DIR)]) == 0
    assert capsys.readouterr().out.count(": up to date") == len(ASSIGNMENTS)


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_solution_is_an_nbgrader_source_notebook_with_the_graders_points(assignment):
    """What ``nbgrader generate_assignment`` demands of a source notebook, and our points on its test cells.

    nbgrader refuses a solution region in a cell not marked as a solution, hidden tests in a
    cell not marked as tests, a grade_id that is invalid or repeated, a test cell without points.
    """
    grade_ids, test_points = [], {}
    for cell in read_notebook(solution_path(assignment))["cells"]:
        roles, source = cell["metadata"]["nbgrader"], cell_source(cell)
        grade_ids.append(roles["grade_id"])
        assert re.fullmatch(r"[a-zA-Z0-9_\-]+", roles["grade_id"]) and roles["schema_version"] == 3
        assert ("### BEGIN SOLUTION" in source) == roles["solution"], roles["grade_id"]
        assert "BEGIN HIDDEN TESTS" not in source or roles["grade"], roles["grade_id"]
        assert roles["locked"] != roles["solution"]
        if roles["grade"]:
            test_points[roles["grade_id"]] = roles["points"]
    assert len(grade_ids) == len(set(grade_ids))
    assert test_points == {task.id: task.points for task in load_assignment(assignment).TASKS}


# --- the mistakes students make ----------------------------------------------------------------------


@dataclass(frozen=True)
class Wrong:
    """A wrong solution: ``old`` replaced by ``new`` in the solution notebook of ``assignment``.

    It must lose the checks in ``loses`` and no other; ``hint`` is in the hint of the first one.
    """

    mistake: str
    assignment: str
    old: str
    new: str
    loses: frozenset
    hint: str


def wrong(mistake, assignment, old, new, loses, hint):
    return Wrong(mistake, assignment, old, new, frozenset(loses), hint)


RUNNING_STATS = """\
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * count / (count - 1)"""

IM2COL_LOOP = """\
    windows = np.empty((n_images, out_h, out_w, n_channels, kh, kw), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            # what kernel position (p, q) sees under every output pixel: (N, C, OH, OW)
            seen = xp[:, :, p : p + stride * out_h : stride, q : q + stride * out_w : stride]
            windows[:, :, :, :, p, q] = seen.transpose(0, 2, 3, 1)"""

WRONG = [
    # Assignment 1: ReLU6 and the convolution
    wrong("relu6: gradient 1 at x = 6", A1,
          "dx = dout * ((x > 0) & (x < 6))", "dx = dout * ((x > 0) & (x <= 6))",
          {"relu6_backward/kinks"}, "At the kinks x = 0 and x = 6, PyTorch takes the slope to be 0"),
    wrong("relu6: the input clipped in place", A1,
          "out = np.clip(x, 0, 6)", "out = np.clip(x, 0, 6, out=x)",
          {"relu6_forward/float32"}, "relu6_forward changed its input x in place"),
    wrong("conv loops: a flipped kernel (convolution, not correlation)", A1,
          "total += w[f, c, p, q] * xp", "total += w[f, c, kh - 1 - p, kw - 1 - q] * xp",
          # the 1x1 kernel of the float32 case is its own flip; the backward, right, is no longer the forward's gradient
          {"conv2d_forward_loops/basic", "conv2d_forward_loops/strided", "conv2d_backward_loops/numerical"},
          "Yours is the convolution with every kernel flipped"),
    wrong("conv loops: the stride ignored in the backward pass", A1,
          "dw[f, c, p, q] += g * xp[n, c, i * stride + p, j * stride + q]\n"
          "                                dxp[n, c, i * stride + p, j * stride + q] += g",
          "dw[f, c, p, q] += g * xp[n, c, i + p, j + q]\n"
          "                                dxp[n, c, i + p, j + q] += g",
          {"conv2d_backward_loops/strided"}, "stride=2"),
    wrong("conv loops: the output made float64 (np.zeros without dtype)", A1,
          "out = np.zeros((n_images, n_filters, out_h, out_w), dtype=x.dtype)",
          "out = np.zeros((n_images, n_filters, out_h, out_w))",
          {"conv2d_forward_loops/float32"}, "out has dtype float64, expected float32"),
    wrong("im2col: columns in (p, q, c) order, not the order of w.reshape(F, -1)", A1,
          IM2COL_LOOP,
          IM2COL_LOOP.replace("n_channels, kh, kw)", "kh, kw, n_channels)").replace(":, :, p, q]", ":, p, q, :]"),
          # col2im still reads (c, p, q): dx stays right, dw does not; a 1x1 kernel has one order only
          {"im2col/basic", "im2col/strided", "col2im/adjoint", "conv2d_forward/basic", "conv2d_forward/strided",
           "conv2d_backward/dw", "conv2d_backward/strided", "conv2d_backward/numerical"},
          "columns are (c, p, q), the order of w.reshape(F, -1)'s columns"),
    wrong("col2im: overlapping windows overwrite (=) instead of adding up (+=)", A1,
          "dxp[:, :, p : p + stride * out_h : stride, q : q + stride * out_w : stride] += dwindows",
          "dxp[:, :, p : p + stride * out_h : stride, q : q + stride * out_w : stride] = dwindows",
          {"col2im/values", "col2im/adjoint", "conv2d_backward/dx", "conv2d_backward/strided",
           "conv2d_backward/numerical"},
          "(+=, not =)"),
    wrong("conv: the padding applied twice (x padded, then im2col pads it again)", A1,
          "    n_images, n_filters = x.shape[0], w.shape[0]\n",
          "    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))\n"
          "    n_images, n_filters = x.shape[0], w.shape[0]\n",
          # every case with padding; the backward checks need the forward's shape right
          {"conv2d_forward/strided", "conv2d_backward/dx", "conv2d_backward/dw", "conv2d_backward/db",
           "conv2d_backward/strided", "conv2d_backward/numerical"},
          "out has shape (1, 3, 5, 6), expected (1, 3, 4, 5)"),
    wrong("conv: db summed over the wrong axes", A1,
          "db = dout.sum(axis=(0, 2, 3)) if has_bias else None\n    dcols",
          "db = dout.sum(axis=(1, 2, 3)) if has_bias else None\n    dcols",
          {"conv2d_backward/db"}, "db has shape (2,), expected (4,)"),
    # Assignment 2: depthwise convolution and batch norm
    wrong("depthwise: summing over the input channels, as a dense convolution", A2,
          "out += channels(w[:, 0, p, q]) * seen", "out += channels(w[:, 0, p, q]) * seen.sum(axis=1, keepdims=True)",
          {"depthwise_conv2d_forward/basic", "depthwise_conv2d_forward/strided", "depthwise_conv2d_forward/float32",
           "depthwise_conv2d_backward/numerical"},
          "Yours sums over the input channels"),
    wrong("depthwise: the stride ignored in the backward pass", A2,
          "seen = xp[:, :, p : p + stride * out_h : stride, q : q + stride * out_w : stride]\n"
          "            dw[:, 0, p, q]",
          "seen = xp[:, :, p : p + out_h, q : q + out_w]\n"
          "            dw[:, 0, p, q]",
          {"depthwise_conv2d_backward/strided"}, "stride=2"),
    wrong("batch norm: the running variance biased", A2,
          "running_var += momentum * var * count / (count - 1)", "running_var += momentum * var",
          {"batchnorm2d_forward/running_var"}, "Yours takes the biased batch variance"),
    wrong("batch norm: momentum as the weight of the old value", A2,
          RUNNING_STATS,
          "        running_mean *= momentum\n"
          "        running_mean += (1 - momentum) * mean\n"
          "        running_var *= momentum\n"
          "        running_var += (1 - momentum) * var * count / (count - 1)",
          {"batchnorm2d_forward/running_mean", "batchnorm2d_forward/running_var"},
          "Yours takes momentum as the weight of the old value"),
    wrong("batch norm: the running statistics rebound, not updated in place", A2,
          RUNNING_STATS,
          "        running_mean = (1 - momentum) * running_mean + momentum * mean\n"
          "        running_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)",
          {"batchnorm2d_forward/running_mean", "batchnorm2d_forward/running_var"},
          "running_mean did not change: update the array you were given in place"),
    wrong("batch norm: evaluation mode normalising with the batch statistics", A2,
          "mean, var = running_mean.copy(), running_var.copy()", "mean, var = x.mean(axis=axes), x.var(axis=axes)",
          # the backward checks in evaluation mode take the student's forward's cache, and its statistics
          {"batchnorm2d_forward/eval", "batchnorm2d_backward/eval", "batchnorm2d_backward_graph/eval"},
          "Yours normalises with the batch's statistics: in evaluation mode use the running ones"),
    wrong("batch norm backward: the 1/M missing", A2,
          "dx = scale / count * (count * dout - channels(dbeta)", "dx = scale * (count * dout - channels(dbeta)",
          {"batchnorm2d_backward/dx", "batchnorm2d_backward/numerical"},
          "Yours is the expected value times 45 everywhere"),
    wrong("batch norm backward: dx without the path through the mean", A2,
          "dx = scale / count * (count * dout - channels(dbeta) - x_hat", "dx = scale / count * (count * dout - x_hat",
          {"batchnorm2d_backward/dx", "batchnorm2d_backward/numerical"},
          "dx = gamma / sqrt(var + eps) / M * (M * dout - dbeta - x_hat * dgamma)"),
    wrong("batch norm graph: the second path into xmu forgotten", A2,
          "    dxmu = dxmu + 2 * xmu * channels(dvar / count)\n", "",
          {"batchnorm2d_backward_graph/training"}, "add both paths"),
]


def patched_solution(assignment, old, new):
    """The solution notebook of ``assignment`` with ``old`` (found exactly once) replaced by ``new``."""
    notebook = read_notebook(solution_path(assignment))
    cells = [cell for cell in notebook["cells"] if old in cell_source(cell)]
    assert len(cells) == 1 and cell_source(cells[0]).count(old) == 1, "the patch no longer applies: update it"
    set_cell_source(cells[0], cell_source(cells[0]).replace(old, new))
    return notebook


def test_the_wrong_solutions_cover_both_assignments_and_name_real_checks():
    # assignments 3 and 4 have their own wrong solutions, in tests/test_grading_assignment3.py and ...4.py
    assert len(WRONG) >= 12 and {case.assignment for case in WRONG} == {A1, A2}
    for case in WRONG:
        ids = {check.id for task in load_assignment(case.assignment).TASKS for check in task.checks}
        assert case.loses and case.loses <= ids, case.mistake


@pytest.mark.parametrize("case", WRONG, ids=lambda case: case.mistake)
def test_a_wrong_solution_loses_the_checks_it_should_and_keeps_the_others(case):
    result = grade_in_this_process(patched_solution(case.assignment, case.old, case.new))
    assert lost(result) == case.loses
    failed = [check for check in result["checks"] if check["id"] in case.loses]
    assert case.hint in failed[0]["hint"], failed[0]["hint"]
    assert all(check["hint"] and "Traceback" not in check["hint"] for check in failed)
    assert result["score"] == 100 - sum(check["points"] for check in failed)


def test_a_function_that_calls_one_not_written_yet_says_which():
    reshape = "    cols = windows.reshape("
    notebook = patched_solution(A1, reshape, "    raise NotImplementedError()\n" + reshape)
    checks = checks_by_id(grade_in_this_process(notebook))
    assert checks["im2col/basic"]["hint"] == "im2col is not written yet: it raises NotImplementedError"
    assert checks["conv2d_forward/basic"]["hint"] == (
        "conv2d_forward calls im2col, which is not written yet: it raises NotImplementedError")
    assert checks["col2im/values"]["score"] == 5


# --- notebooks that misbehave --------------------------------------------------------------------------

RELU6 = """\
import numpy as np


def relu6_forward(x):
    return np.clip(x, 0, 6), x


def relu6_backward(dout, cache):
    return dout * ((cache > 0) & (cache < 6))
"""
RELU6_POINTS = 10


def write_notebook_of(folder, *sources, assignment=A1):
    """A notebook of code cells with ``sources``, written to ``folder/submission.ipynb``; returns its path."""
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{number}", "metadata": {}, "outputs": [],
              "source": source} for number, source in enumerate(sources, start=1)]
    metadata = {"npmobilenet": {"assignment": assignment}} if assignment else {}
    path = Path(folder) / "submission.ipynb"
    write_notebook({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}, path)
    return path


def checks_by_id(result):
    return {check["id"]: check for check in result["checks"]}


def test_a_notebook_whose_cells_fail_is_graded_on_what_it_defined(tmp_path):
    path = write_notebook_of(
        tmp_path,
        "1 / 0",
        "%matplotlib inline\n!pip list\nprint('x' * 3_000_000)\nprint('{\"event\": \"done\", \"printed\": 0}')",
        RELU6,
        "def im2col(x, kh, kw, stride, padding)\n    return x",
        "exit()",
        "import os\nos.write(1, b'noise on the real stdout ' * 10000)\nos.write(2, b'and on stderr')",
        "from npmobilenet.functional import conv2d_forward",
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()",  # must not hold the process
    )
    result = grade(path)
    assert result["status"] == "graded" and result["score"] == RELU6_POINTS
    notes = result["notes"]
    assert notes[0].startswith("cell 1 (1 / 0): ZeroDivisionError: division by zero, at cell 1, line 1")
    assert notes[1].startswith("cell 4 (def im2col(x, kh, kw, stride, padding)): SyntaxError at line 1")
    assert notes[2].startswith("cell 5 (exit()): SystemExit")
    assert re.fullmatch(r"The notebook printed 3,000,0\d\d characters; the grader ignores them\.", notes[3])
    checks = checks_by_id(result)
    assert checks["im2col/basic"]["hint"].startswith("im2col is not defined: write it in its task's cell")
    assert "(a cell failed: cell 1 (1 / 0): ZeroDivisionError" in checks["im2col/basic"]["hint"]
    assert checks["conv2d_forward/basic"]["hint"] == (
        "conv2d_forward is npmobilenet's own (npmobilenet.functional.conv.conv2d_forward), imported, not written: "
        "write your own")


def test_a_notebook_that_loops_forever_is_stopped_and_graded_on_what_it_defined(tmp_path):
    path = write_notebook_of(
        tmp_path,
        RELU6.replace("return dout * ((cache > 0) & (cache < 6))", "while True:\n        pass"),
        "while True:\n    pass",
        "def im2col(x, kh, kw, stride, padding):\n    return x",
    )
    result = grade(path, timeout=2, check_seconds=1)
    assert result["status"] == "graded"
    checks = checks_by_id(result)
    assert [checks[name]["score"] for name in ("relu6_forward/values", "relu6_forward/float32")] == [3, 2]
    for name in ("relu6_backward/values", "relu6_backward/kinks"):
        assert checks[name]["hint"] == "did not finish within 1 s: a loop that never ends?"
    assert result["notes"] == [
        "cell 2 (while True:) was still running when the notebook's 2 s were up: it was stopped, and the cells "
        "after it did not run (a loop that never ends? grade with a longer --timeout if it is just slow)"]
    assert checks["im2col/basic"]["hint"].startswith("im2col is not defined")  # cell 3 never ran


def test_a_notebook_that_swallows_every_interrupt_is_killed_and_still_scored(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "STARTUP_SECONDS", 4.0)  # the real allowance is 30 s
    path = write_notebook_of(tmp_path, RELU6, "import time\nwhile True:\n    try:\n        time.sleep(5)\n"
                                              "    except BaseException:\n        pass")
    result = grade(path, timeout=1, check_seconds=0.05)
    assert result["status"] == "stopped" and result["score"] == 0
    assert result["notes"][-1].startswith("The grading stopped early: the notebook and the checks outlived all "
                                          "their time limits together")
    assert result["notes"][-1].endswith("during cell 2, so the grader stopped them")
    assert checks_by_id(result)["relu6_forward/values"]["hint"].startswith("not run: the notebook and the checks")


def test_a_notebook_that_ends_the_process_gets_a_score_and_a_message(tmp_path):
    path = write_notebook_of(tmp_path, RELU6, "import os\nprint('bye', flush=True)\nos._exit(3)")
    result = grade(path)
    assert result["status"] == "stopped" and result["score"] == 0
    assert result["notes"] == ["The grading stopped early: the notebook ended the grader's process (exit status 3) "
                               "during cell 2"]


def test_grade_json_for_a_notebook_that_defines_nothing(tmp_path, capsys):
    path = write_notebook_of(tmp_path, "x = 1", assignment=A2)
    assert main(["grade", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert captured.err == ""
    assert set(result) == {"notebook", "assignment", "title", "status", "score", "max_score", "tasks", "checks", "notes"}
    assert (result["assignment"], result["status"], result["score"], result["max_score"]) == (A2, "graded", 0, 100)
    assert sum(task["max_score"] for task in result["tasks"]) == 100
    for check in result["checks"]:
        assert set(check) == {"id", "task", "name", "points", "score", "hint", "seconds"}
        assert re.fullmatch(r"\w+ is not defined: write it in its task's cell, under exactly that name", check["hint"])


# --- the command's errors ------------------------------------------------------------------------------


def bad_notebooks(folder):
    """``{case: (argv, what the error line says)}``: every argument that makes ``grade`` exit 2."""
    folder = Path(folder)
    (folder / "text.ipynb").write_text("not json")
    (folder / "object.ipynb").write_text('{"cells": 3}')
    no_metadata = write_notebook_of(folder, "x = 1", assignment=None).rename(folder / "no-metadata.ipynb")
    unknown = write_notebook_of(folder, "x = 1", assignment="99-unknown")
    return {
        "missing": (["grade", str(folder / "missing.ipynb")], "missing.ipynb: no such file"),
        "a folder": (["grade", str(folder)], "is a folder, not a notebook"),
        "not JSON": (["grade", str(folder / "text.ipynb")], "is not a Jupyter notebook: it is not JSON text"),
        "not a notebook": (["grade", str(folder / "object.ipynb")], "is not a Jupyter notebook: expected"),
        "no metadata": (["grade", str(no_metadata)], "does not say which assignment it is"),
        "unknown assignment": (["grade", str(unknown)], "unknown assignment '99-unknown'"),
        "no assignments folder": (["assignments", "generate", str(folder / "nowhere")], "nowhere: no such folder"),
    }


def test_bad_arguments_print_one_error_line_and_exit_2(tmp_path, capsys):
    for case, (argv, message) in bad_notebooks(tmp_path).items():
        assert main(argv) == 2, case
        captured = capsys.readouterr()
        assert captured.out == "", case
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, (case, captured.err)
        assert message in captured.err, (case, captured.err)


@pytest.mark.parametrize("argv", [["grade"], ["grade", "x.ipynb", "--timeout", "0"],
                                  ["grade", "x.ipynb", "--assignment", "99-unknown"], ["assignments"]])
def test_usage_mistakes_exit_2_with_one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


# --- generate ------------------------------------------------------------------------------------------

SOLUTION_CELL = """\
def f(x):
    \"\"\"Twice x.\"\"\"
    ### BEGIN SOLUTION
    y = 2 * x
    ### END SOLUTION
    return y"""
TEST_CELL = """\
assert f(1) == 2
### BEGIN HIDDEN TESTS
assert f(2) == 4
### END HIDDEN TESTS
print("ok")"""


def test_generate_replaces_solutions_keeps_the_indentation_drops_hidden_tests_and_clears_outputs(tmp_path, capsys):
    cells = [
        {"cell_type": "code", "execution_count": 3, "id": "a", "metadata": {"nbgrader": {"solution": True}},
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "old"}], "source": SOLUTION_CELL},
        {"cell_type": "code", "execution_count": 4, "id": "b", "metadata": {"nbgrader": {"grade": True, "locked": True}},
         "outputs": [], "source": TEST_CELL},
        {"cell_type": "markdown", "id": "c", "metadata": {},
         "source": "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"},
    ]
    (tmp_path / "99-test").mkdir()
    write_notebook({"cells": cells, "metadata": {"celltoolbar": "Create Assignment"}, "nbformat": 4,
                    "nbformat_minor": 5}, tmp_path / "99-test" / "solution.ipynb")
    assert main(["assignments", "generate", "--check", str(tmp_path)]) == 1  # no student notebook yet
    assert main(["assignments", "generate", str(tmp_path)]) == 0
    assert main(["assignments", "generate", "--check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"{tmp_path / '99-test' / 'student.ipynb'}: written", f"{tmp_path / '99-test' / 'student.ipynb'}: up to date"]
    student = read_notebook(tmp_path / "99-test" / "student.ipynb")
    code, test, text = student["cells"]
    assert cell_source(code) == ('def f(x):\n    """Twice x."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
                                 "    return y")
    assert cell_source(test) == 'assert f(1) == 2\nprint("ok")'
    assert cell_source(text) == "Why?\nYOUR ANSWER HERE"
    assert (code["outputs"], code["execution_count"], test["execution_count"]) == ([], None, None)
    assert (code["metadata"]["deletable"], "editable" in code["metadata"]) == (False, False)
    assert (test["metadata"]["deletable"], test["metadata"]["editable"]) == (False, False)
    assert "celltoolbar" not in student["metadata"]


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "cell 1: '### BEGIN SOLUTION' has no '### END SOLUTION'"),
    ("x = 1\n### END SOLUTION", "cell 1: '### END SOLUTION' without a '### BEGIN SOLUTION' before it"),
    ("### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS", "cell 1: '### BEGIN HIDDEN TESTS' again before"),
])
def test_generate_refuses_markers_that_do_not_pair_up(tmp_path, capsys, source, message):
    (tmp_path / "99-test").mkdir()
    write_notebook_of(tmp_path / "99-test", source).rename(tmp_path / "99-test" / "solution.ipynb")
    assert main(["assignments", "generate", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "99-test" / "student.ipynb").exists()


# --- the pieces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("actual, expected, hint", [
    (np.zeros((3, 2)), np.ones((2, 3)), "has shape (3, 2), expected (2, 3): the right sizes in another order"),
    (np.zeros(6), np.ones((2, 3)), "the right number of values in another shape"),
    (np.zeros((2, 3)), np.ones((2, 3)), "Yours is all zeros."),
    (-np.arange(1.0, 7.0), np.arange(1.0, 7.0), "Yours is the expected value with the sign flipped."),
    (3 * np.arange(1.0, 7.0), np.arange(1.0, 7.0), "Yours is the expected value times 3 everywhere"),
    (np.array([1.0, np.nan]), np.array([1.0, 2.0]), "out has nan at index (1,)"),
    (np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.0, 3.0]),
     "out differs from the expected value at 1 of 3 places; the first at index (2,): yours 3.5, expected 3."),
    ((np.ones(2), None), np.ones(2), "out should be a NumPy array, got a tuple of 2 items"),
    (np.ones(2), None, "out should be None here (the forward pass had no bias), got an array of shape (2,)"),
])
def test_a_wrong_value_gets_a_hint_that_says_how_it_is_wrong(actual, expected, hint):
    with pytest.raises(CheckFailed) as failure:
        expect_close("out", actual, expected)
    assert hint in str(failure.value)


def test_a_stuck_process_is_killed_after_its_time(tmp_path):
    command = [sys.executable, "-c", "import subprocess, sys, time\n"
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\nprint('started', flush=True)\n"
               "time.sleep(60)"]
    returncode, timed_out, output = runner.run_child(command, tmp_path, seconds=1)
    assert timed_out and returncode != 0 and output == "started\n"


def test_import_npmobilenet_does_not_import_the_grader():
    code = "import sys, npmobilenet\nprint(any(m.startswith('npmobilenet.grading') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
