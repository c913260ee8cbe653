"""The ``npmobilenet`` command: its output, and one line ``error: ...`` with status 2 for bad input."""

import subprocess
import sys

import pytest

from npmobilenet import __version__


def run(*args):
    return subprocess.run([sys.executable, "-m", "npmobilenet", *args], capture_output=True, text=True, timeout=120)


def test_demo_trains_and_passes_its_gradient_check():
    result = run("demo", "--steps", "10", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    losses = [float(line.split("loss")[1]) for line in result.stdout.splitlines() if "loss" in line and "step" in line]
    assert len(losses) == 3  # steps 1, 5 and 10
    assert losses[-1] < losses[0]
    assert "backward is correct" in result.stdout
    assert "Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=8, bias=False)" in result.stdout


def test_help_and_version():
    for args in (["--help"], ["demo", "--help"]):
        result = run(*args)
        assert result.returncode == 0 and "usage: npmobilenet" in result.stdout
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"npmobilenet {__version__}"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "required: COMMAND"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["demo", "--steps", "0"], "expected a positive integer, got '0'"),
        (["demo", "--steps", "many"], "expected a positive integer, got 'many'"),
        (["demo", "--seed", "1.5"], "invalid int value: '1.5'"),
        (["demo", "--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bad_arguments_give_one_error_line_and_status_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
