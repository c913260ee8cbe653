"""The tutorials are kept readable: stored without outputs, listed in their README, titled.

Running them is nbmake's job (``python -m pytest --nbmake tutorials/``); these tests check how
they are stored, with the standard library alone, so that they run wherever the tests do.
"""

import json
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
README = TUTORIALS / "README.md"


def stored_notebooks():
    """Every notebook of the course: the tutorials and the assignments, at any depth below ``assignments/``."""
    found = sorted(TUTORIALS.glob("*.ipynb")) + sorted((TUTORIALS / "assignments").glob("**/*.ipynb"))
    return [path for path in found if ".ipynb_checkpoints" not in path.parts]


def tutorials():
    """The numbered tutorials, ``tutorials/NN-name.ipynb``."""
    return sorted(TUTORIALS.glob("*.ipynb"))


def name(path):
    return str(path.relative_to(TUTORIALS))


def read(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def test_there_are_tutorials():
    assert tutorials(), f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", stored_notebooks(), ids=name)
def test_stored_without_outputs(path):
    notebook = read(path)
    assert notebook.get("nbformat") == 4, f"{name(path)}: expected an nbformat 4 notebook"
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{name(path)}: code cells {dirty} are stored with outputs or execution counts; clear them "
        f"(jupyter nbconvert --clear-output --inplace {name(path)}) so that diffs show only the changes"
    )


@pytest.mark.parametrize("path", stored_notebooks(), ids=name)
def test_first_cell_is_a_markdown_title(path):
    cells = read(path)["cells"]
    assert cells, f"{name(path)}: the notebook has no cells"
    first = cells[0]
    text = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    assert first["cell_type"] == "markdown" and re.match(r"# \S", text.lstrip()), (
        f"{name(path)}: the first cell must be a markdown title ('# ...'), got a "
        f"{first['cell_type']} cell starting {text[:40]!r}"
    )


@pytest.mark.parametrize("path", tutorials(), ids=name)
def test_tutorial_is_numbered(path):
    assert re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", path.name), (
        f"{path.name}: tutorials are named NN-name.ipynb (two digits, a dash, lowercase words with dashes)"
    )


def test_readme_lists_every_tutorial():
    text = README.read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([^)\s]+\.ipynb)\)", text))
    missing = [path.name for path in tutorials() if path.name not in links]
    assert not missing, f"tutorials/README.md does not link {missing}: add them to the learning path"
    dead = sorted(link for link in links if not (TUTORIALS / link).is_file())
    assert not dead, f"tutorials/README.md links notebooks that do not exist: {dead}"
