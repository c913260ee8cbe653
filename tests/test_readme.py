"""The README opens with the two commands a new user needs, and CI runs the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    """The commands in the README's first shell block, one per line."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:sh|bash|console)\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_install_and_run_then_install_and_test():
    install_and_run, install_and_test = readme_commands()[:2]
    assert "pip install" in install_and_run and "npmobilenet " in install_and_run
    assert "pip install" in install_and_test and ".[dev]" in install_and_test and "pytest" in install_and_test


def test_ci_runs_the_readme_test_command_strictly():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
    assert "NPMOBILENET_STRICT_TESTS=1" in ci


def test_readme_python_examples_run(shared_dir, tmp_path, monkeypatch):
    """Every ```python block of the README runs, in order, in one namespace, as a reader would paste them.

    (```py blocks show code that takes minutes, such as training on a real dataset: the tests
    of npmobilenet.train run that code on small data.)

    With the weights in ../shared, as the README tells a reader without network to do.
    """
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"))
    monkeypatch.setenv("NPMOBILENET_HOME", str(tmp_path))
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text()
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    assert max(namespace["errors"].values()) < 1e-6  # the gradient check the README shows
    assert namespace["best"].index == 285  # the cat the README's prediction shows
