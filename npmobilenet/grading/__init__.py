"""The autograder of the course's assignments: no nbgrader, no Jupyter, NumPy alone.

An assignment is a teacher's solution notebook (``tutorials/assignments/NN-name/solution.ipynb``)
whose code to remove is marked with nbgrader's markers, the student notebook generated from it
(``student.ipynb``), and a module here holding its graded checks. The modules, in the order a
notebook meets them:

* :mod:`~npmobilenet.grading.notebook`: a notebook is a JSON file; read it, write it
  byte for byte as Jupyter does, find which assignment it is (``metadata.npmobilenet.assignment``);
* :mod:`~npmobilenet.grading.generate`: solution -> student notebook (``### BEGIN SOLUTION``
  regions become ``raise NotImplementedError()``, hidden tests go, outputs are cleared);
* :mod:`~npmobilenet.grading.runner`: runs a student's notebook in a fresh process with a time
  limit, then runs the checks on the functions it defined, in that same process;
* :mod:`~npmobilenet.grading.checks`: a :class:`~npmobilenet.grading.checks.Check` is a name,
  points and a function that raises :class:`~npmobilenet.grading.checks.CheckFailed` with a
  hint; :class:`~npmobilenet.grading.checks.Student` calls the notebook's functions safely;
* :mod:`~npmobilenet.grading.compare`: the hints: which output, which shape, how far off, the
  first index where it differs;
* :mod:`~npmobilenet.grading.pairs`: the checks every forward/backward pair gets (against the
  library, by finite differences, dtype, speed);
* :mod:`~npmobilenet.grading.report`: the score table and the JSON;
* :mod:`~npmobilenet.grading.cli`: ``npmobilenet grade`` and ``npmobilenet assignments generate``;
* ``assignment1``, ``assignment2``, ...: one module per assignment, listed in
  :data:`ASSIGNMENTS`.

**Adding an assignment** takes a module here and two notebooks. The module defines ``ID`` (the
folder's name, also written in the notebook's metadata), ``TITLE``, and ``TASKS``, a list of
:class:`~npmobilenet.grading.checks.Task`: one per task of the notebook, its ``id`` being the
``grade_id`` of the task's test cell, whose nbgrader ``points`` are the task's points. Add a
line to :data:`ASSIGNMENTS`, write ``solution.ipynb``, run ``npmobilenet assignments
generate``, and ``tests/test_grading.py`` grades both notebooks (full marks, zero) with no
change; add wrong solutions to it for the mistakes the new checks must catch.

``import npmobilenet`` does not import this package.
"""

import importlib

# assignment id (its folder in tutorials/assignments, and metadata.npmobilenet.assignment) -> checks module
ASSIGNMENTS = {
    "01-conv2d-relu6": "npmobilenet.grading.assignment1",
    "02-depthwise-batchnorm": "npmobilenet.grading.assignment2",
    "03-inverted-residual-network": "npmobilenet.grading.assignment3",
    "04-optimizer-finetuning": "npmobilenet.grading.assignment4",
}


def load_assignment(name):
    """The checks module of assignment ``name`` (a ``ValueError`` naming the known ones otherwise)."""
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; the grader knows {', '.join(ASSIGNMENTS)}")
    return importlib.import_module(ASSIGNMENTS[name])
