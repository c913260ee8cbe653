"""The package as a user meets it: what importing it pulls in, and what it exports."""

import subprocess
import sys

import npmobilenet


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


def test_public_names():
    for name in npmobilenet.__all__:
        assert hasattr(npmobilenet, name), name
    for name in npmobilenet.nn.__all__:
        assert hasattr(npmobilenet.nn, name), name
    for name in npmobilenet.functional.__all__:
        assert callable(getattr(npmobilenet.functional, name)), name


def test_every_public_function_and_class_has_a_docstring():
    modules = [
        npmobilenet.functional, npmobilenet.nn, npmobilenet.gradcheck, npmobilenet.reference,
        npmobilenet.mobilenetv2, npmobilenet.weights, npmobilenet.transforms, npmobilenet.imagenet,
        sys.modules["npmobilenet.predict"], npmobilenet.errors,  # npmobilenet.predict is the function
    ]
    missing = []
    for module in modules:
        for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
            value = getattr(module, name)
            if callable(value) and getattr(value, "__module__", "").startswith("npmobilenet") and not value.__doc__:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing
