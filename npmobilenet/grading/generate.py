"""The student's notebook, made from the teacher's solution: nbgrader's markers, without nbgrader.

In the solution notebook, the code a student writes sits between two marker lines::

    def relu6_forward(x):
        ### BEGIN SOLUTION
        out = np.clip(x, 0, 6)
        ### END SOLUTION
        return out, x

and the student version has, at the same indentation, nbgrader's stub instead::

    def relu6_forward(x):
        # YOUR CODE HERE
        raise NotImplementedError()
        return out, x

Tests the student must not see sit between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN
TESTS`` and are removed. Outputs and execution counts are cleared, and cells are locked in
Jupyter as ``nbgrader generate_assignment`` locks them (:func:`lock`). The markers, the stub and
the cell metadata are nbgrader's own: ``nbgrader generate_assignment`` takes the solution
notebooks as they are and makes the same student cells.

:func:`generate` writes ``student.ipynb`` beside every ``solution.ipynb`` in a folder, or with
``check=True`` only says which are out of date (the tests run that).
"""

from pathlib import Path

from .notebook import cell_source, notebook_text, read_notebook, set_cell_source, write_notebook

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]  # nbgrader's stubs, word for word
TEXT_STUB = ["YOUR ANSWER HERE"]
SOLUTION_NAME, STUDENT_NAME = "solution.ipynb", "student.ipynb"


def student_version(solution):
    """The student notebook for the solution notebook ``solution`` (a dict; it is not changed)."""
    notebook = {key: value for key, value in solution.items() if key != "cells"}
    notebook["metadata"] = {key: value for key, value in solution.get("metadata", {}).items() if key != "celltoolbar"}
    notebook["cells"] = [student_cell(cell, number) for number, cell in enumerate(solution["cells"], start=1)]
    return notebook


def student_cell(cell, number):
    """One cell of the student version: solution regions replaced, hidden tests removed, outputs cleared."""
    cell = dict(cell, metadata=dict(cell.get("metadata", {})))
    lines = cell_source(cell).split("\n")
    stub = CODE_STUB if cell["cell_type"] == "code" else TEXT_STUB
    lines = remove_region(lines, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, None, number)
    lines = remove_region(lines, BEGIN_SOLUTION, END_SOLUTION, stub, number)
    set_cell_source(cell, "\n".join(lines))
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
    lock(cell["metadata"])
    return cell


def lock(metadata):
    """As nbgrader's release does: a student may not delete the cells nbgrader tracks, nor edit its locked ones."""
    roles = metadata.get("nbgrader", {})
    if roles.get("solution") or roles.get("grade") or roles.get("locked"):
        metadata["deletable"] = False
    if roles.get("locked"):
        metadata["editable"] = False


def remove_region(lines, begin, end, stub, number):
    """Drop the lines from each ``begin`` marker to its ``end``; put ``stub`` (if any) there, indented as the marker."""
    kept, inside = [], False
    for line in lines:
        if line.strip() == begin:
            if inside:
                raise ValueError(f"cell {number}: '{begin}' again before '{end}'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            kept.extend(indent + stub_line for stub_line in stub or [])
        elif line.strip() == end:
            if not inside:
                raise ValueError(f"cell {number}: '{end}' without a '{begin}' before it")
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"cell {number}: '{begin}' has no '{end}'")
    return kept


def solution_notebooks(folder):
    """The ``*/solution.ipynb`` files under ``folder`` (or ``folder`` itself, when it is one), sorted."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (run this from the project's root, or name the assignments' folder)")
    found = sorted(folder.glob(f"*/{SOLUTION_NAME}"))
    if not found:
        raise ValueError(f"{folder} has no */{SOLUTION_NAME}: name the folder that holds the assignments")
    return found


def generate(folder, check=False):
    """Write ``student.ipynb`` beside every ``solution.ipynb`` under ``folder``; returns ``[(student path, status)]``.

    The status is ``"up to date"``, ``"written"``, or with ``check=True`` (nothing is written)
    ``"out of date"``.
    """
    results = []
    for solution_path in solution_notebooks(folder):
        solution = read_notebook(solution_path)
        try:
            student = student_version(solution)
        except ValueError as error:
            raise ValueError(f"{solution_path}: {error}") from None
        student_path = solution_path.with_name(STUDENT_NAME)
        current = student_path.read_text(encoding="utf-8") if student_path.is_file() else None
        if current == notebook_text(student):
            status = "up to date"
        elif check:
            status = "out of date"
        else:
            write_notebook(student, student_path)
            status = "written"
        results.append((student_path, status))
    return results
