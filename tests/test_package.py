"""The package as a user meets it: what importing it pulls in, and what it exports."""

import subprocess
import sys

import npmobilenet
import npmobilenet.models.weights
import npmobilenet.prediction


def test_import_pulls_in_neither_torch_nor_matplotlib():
    """Checked in a fresh interpreter, since this test process may have imported torch already.

    Every module is imported by the package, and reading the class names too imports nothing heavy.
    """
    code = (
        "import sys, npmobilenet, npmobilenet.cli\n"
        "npmobilenet.imagenet.categories()\n"
        "heavy = [m for m in ('torch', 'torchvision', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# A finder put first in sys.meta_path: to this interpreter, Pillow is not installed.
HIDE_PILLOW = """
import importlib.abc, sys

class HidePillow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "PIL" or fullname.startswith("PIL."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, HidePillow())
"""


def test_the_network_needs_numpy_alone_and_predict_asks_for_pillow():
    """Without Pillow: the package, the layers and the network import and train; ``predict``
    then raises one ImportError that says to install Pillow, with no chained traceback."""
    code = HIDE_PILLOW + (
        "import numpy as np\n"
        "import npmobilenet, npmobilenet.functional, npmobilenet.nn\n"
        "from npmobilenet import MobileNetV2\n"
        "model = MobileNetV2(width_mult=0.35, num_classes=3)\n"
        "x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)\n"
        "logits = model(x)\n"
        "dx = model.backward(np.ones_like(logits))\n"
        "assert logits.shape == (2, 3) and dx.shape == x.shape, (logits.shape, dx.shape)\n"
        "assert 'PIL' not in sys.modules, 'PIL was imported'\n"
        "print('core ok', flush=True)\n"
        "npmobilenet.predict\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout == "core ok\n", result.stderr
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: npmobilenet.predict needs Pillow"), result.stderr
    assert "pip install Pillow" in last_line
    assert result.stderr.count("Traceback") == 1 and "During handling" not in result.stderr, result.stderr


def test_public_names():
    for name in npmobilenet.__all__:
        assert hasattr(npmobilenet, name), name
    for name in npmobilenet.nn.__all__:
        assert hasattr(npmobilenet.nn, name), name
    functional = npmobilenet.functional
    for level in (functional, functional.loops, functional.fast):
        for name in level.__all__:
            value = getattr(level, name)
            assert callable(value) or value in (functional.loops, functional.fast), f"{level.__name__}.{name}"


def test_every_operation_is_written_three_ways():
    """Every forward/backward pair of the plain version has a loop version and a fast one of the same name
    (the fast batch norm has the simplified backward form only)."""
    functional = npmobilenet.functional
    pairs = {name for name in functional.__all__ if "_forward" in name or "_backward" in name}
    assert len(pairs) == 2 * 9 + 1  # nine operations (ReLU and ReLU6 apart), and the graph form of batch norm's backward
    assert pairs <= set(functional.loops.__all__)
    assert pairs - {"batchnorm2d_backward_graph"} <= set(functional.fast.__all__)
    for name in pairs - {"batchnorm2d_backward_graph"}:
        assert getattr(npmobilenet.nn.F, name) is getattr(functional.fast, name), f"nn must run the fast {name}"


def test_every_public_function_and_class_has_a_docstring():
    modules = [
        npmobilenet.functional, npmobilenet.functional.loops, npmobilenet.functional.fast,
        npmobilenet.functional.fast.layout, npmobilenet.nn, npmobilenet.gradcheck,
        npmobilenet.models.mobilenetv2, npmobilenet.models.weights, npmobilenet.io.torch_load,
        npmobilenet.io.torch_save, npmobilenet.io.npz, npmobilenet.io.any_format, npmobilenet.io.atomic,
        npmobilenet.io.hub, npmobilenet.transforms, npmobilenet.imagenet,
        npmobilenet.prediction, npmobilenet.errors,  # npmobilenet.predict is the function
    ]
    missing = []
    for module in modules:
        for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
            value = getattr(module, name)
            if callable(value) and getattr(value, "__module__", "").startswith("npmobilenet") and not value.__doc__:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing
