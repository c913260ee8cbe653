"""A Jupyter notebook is a JSON file: read one, write one byte for byte as Jupyter does, find its code.

No Jupyter package is needed. A notebook (format 4) is an object with ``cells``, ``metadata``,
``nbformat`` and ``nbformat_minor``; each cell has a ``cell_type`` (``"code"``, ``"markdown"``,
``"raw"``), a ``source`` (a string, or a list of lines that join into one) and its own
``metadata``; code cells also have ``outputs`` and an ``execution_count``.

:func:`notebook_text` writes what ``nbformat`` writes (keys sorted, an indent of one space,
sources as lists of lines, a final newline), so a notebook generated here and then saved by
Jupyter does not change, and a committed notebook can be compared with a freshly generated one
as text.
"""

import json
from pathlib import Path

from ..io.atomic import atomic_write


def read_notebook(path):
    """The notebook in ``path`` as a dict; a ``ValueError`` that says why when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file" if not path.exists() else f"{path} is a folder, not a notebook")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a Jupyter notebook: it is not JSON text ({error})") from None
    if not (isinstance(notebook, dict) and notebook.get("nbformat") == 4 and isinstance(notebook.get("cells"), list)):
        raise ValueError(f"{path} is not a Jupyter notebook: expected a JSON object with "
                         f"\"nbformat\": 4 and a list of \"cells\"")
    for number, cell in enumerate(notebook["cells"], start=1):
        if not (isinstance(cell, dict) and isinstance(cell.get("cell_type"), str)):
            raise ValueError(f"{path} is not a valid notebook: cell {number} has no cell_type")
    return notebook


def cell_source(cell):
    """A cell's source as one string (Jupyter stores it as a list of lines, or as one string)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def set_cell_source(cell, text):
    """Store ``text`` as a list of lines, each with its newline but the last, as nbformat does."""
    cell["source"] = text.splitlines(keepends=True)


def code_cells(notebook):
    """``[(number, source), ...]`` for every code cell; ``number`` counts all cells from 1, as a reader does."""
    return [
        (number, cell_source(cell))
        for number, cell in enumerate(notebook["cells"], start=1)
        if cell["cell_type"] == "code"
    ]


def assignment_of(notebook):
    """The assignment a notebook says it is (``metadata.npmobilenet.assignment``), or None."""
    metadata = notebook.get("metadata")
    section = metadata.get("npmobilenet") if isinstance(metadata, dict) else None
    name = section.get("assignment") if isinstance(section, dict) else None
    return name if isinstance(name, str) else None


def notebook_text(notebook):
    """The notebook as nbformat writes it: sorted keys, indent 1, sources split into lines, a final newline."""
    notebook = json.loads(json.dumps(notebook))  # a deep copy we may change
    for cell in notebook["cells"]:
        set_cell_source(cell, cell_source(cell))
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_notebook(notebook, path):
    """Write ``notebook`` to ``path`` (atomically: a failure leaves the old file as it was)."""
    with atomic_write(path, mode="w") as file:
        file.write(notebook_text(notebook))
