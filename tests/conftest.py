"""Fixtures and the switches for optional test dependencies.

Tests that need torch ask for the ``torch`` fixture, tests that need torchvision for
``torchvision``, tests that need the data in ``../shared`` for ``shared_dir``. Without them the
test is skipped with a reason. With ``NPMOBILENET_STRICT_TESTS=1`` (CI sets it) every skip
becomes a failure, so a CI run can never pass by skipping.

Twins (our module and its torch counterpart, holding the same weights; see ``twins.py``) come
from the fixtures ``twins`` (layers) and ``network_twins`` (the whole MobileNetV2).
"""

import functools
import importlib
import os
import sys
from pathlib import Path

import pytest
from twins import make_network_twins, make_twins

STRICT = os.environ.get("NPMOBILENET_STRICT_TESTS") == "1"
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


def require_module(name):
    """Import ``name``, or skip the test (fail it under the strict switch) when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.skip(f"{name} is not installed ({error}); install the test dependencies: pip install -e '.[dev]'")


@pytest.fixture(scope="session")
def torch():
    torch = require_module("torch")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


@pytest.fixture(scope="session")
def torchvision(torch):
    return require_module("torchvision")


@pytest.fixture(scope="session")
def onnxruntime(torch):
    """ONNX Runtime and onnx (``torch.onnx``'s export needs it): the bench's second reference."""
    require_module("onnx")
    return require_module("onnxruntime")


@pytest.fixture(scope="session")
def twins(torch):
    """``twins(*layers, dtype=np.float32, training=True, seed=0)``: :func:`twins.make_twins` with torch."""
    return functools.partial(make_twins, torch)


@pytest.fixture(scope="session")
def network_twins(torch, torchvision):
    """``network_twins(width_mult, dtype, seed, training)``: :func:`twins.make_network_twins` with torch."""
    return functools.partial(make_network_twins, torch)


@pytest.fixture(autouse=True)
def seed_torch():
    """torch layers start from torch's global generator: seed it so every run sees the same weights."""
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED_DIR.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DIR} is missing (it sits beside the project)")
    return SHARED_DIR


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under NPMOBILENET_STRICT_TESTS=1, report every skipped test as failed, with the skip reason."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and NPMOBILENET_STRICT_TESTS=1 forbids skips: {reason}"


# --- figures a test measures and reports (printed at the end of the run) ----------------------

_REPORTED = []


@pytest.fixture(scope="session")
def report():
    """``report("top-1 on ../shared/images: 0.85")``: a line for the summary at the end of the run."""
    return _REPORTED.append


def pytest_terminal_summary(terminalreporter):
    if _REPORTED:
        terminalreporter.section("figures measured by the tests")
        for line in _REPORTED:
            terminalreporter.write_line(line)
