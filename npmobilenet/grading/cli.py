"""``npmobilenet grade`` and ``npmobilenet assignments generate``.

* ``npmobilenet grade NOTEBOOK [--json] [--timeout S] [--assignment NAME]``: runs the notebook
  headless in a fresh process and prints a score table, with a hint for each failed check (or
  the result as JSON). The status is 0 whenever the notebook was graded, whatever its score;
  2, with one ``error: ...`` line, when NOTEBOOK is missing, is not a notebook, or names no
  assignment the grader knows.
* ``npmobilenet assignments generate [FOLDER ...] [--check]``: writes ``student.ipynb`` beside
  every ``solution.ipynb`` (default folder: ``tutorials/assignments``); with ``--check``,
  writes nothing and exits 1 if a student notebook is not what the command makes today.

:func:`add_grading_commands` adds both to the ``npmobilenet`` command's subparsers;
:func:`main` runs them alone (the tests use it).
"""

import json
import sys

from . import ASSIGNMENTS
from .generate import generate
from .report import format_table
from .runner import DEFAULT_TIMEOUT, grade

DEFAULT_FOLDER = "tutorials/assignments"


def add_grading_commands(commands):
    """Add ``grade`` and ``assignments`` to ``commands``, the subparsers of the ``npmobilenet`` command."""
    from ..cli import _positive_float  # here, not above: npmobilenet.cli imports this module
    grade_parser = commands.add_parser(
        "grade",
        help="grade a student's assignment notebook: a score per check, and a hint for each failed one",
        description="Run NOTEBOOK's code cells headless in a fresh process (print output is discarded; a cell "
        "that fails is noted and the next one runs), then grade the functions it defines with the "
        "assignment's checks: against npmobilenet's own layers, against the loop versions, by finite "
        "differences, on inputs the notebook does not show. Prints a score table and, for each failed "
        "check, what differs and where. Exit status 0 whenever the notebook was graded.",
    )
    grade_parser.add_argument("notebook", metavar="NOTEBOOK", help="a student's .ipynb")
    grade_parser.add_argument("--json", action="store_true", help="print the result as JSON")
    grade_parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT, metavar="S",
                              help=f"seconds the notebook's cells may run, together (default {DEFAULT_TIMEOUT:g}); "
                              "each check has its own limit too")
    grade_parser.add_argument("--assignment", choices=tuple(ASSIGNMENTS), default=None,
                              help="the assignment, when the notebook's metadata does not say")
    grade_parser.set_defaults(run=run_grade)

    assignments = commands.add_parser(
        "assignments",
        help="the course's assignments: make the student notebooks from the teacher's solutions",
        description="Tools for the assignments in tutorials/assignments.",
    )
    actions = assignments.add_subparsers(dest="action", metavar="ACTION", parser_class=type(assignments))
    actions.required = True
    generate_parser = actions.add_parser(
        "generate",
        help="write student.ipynb beside every solution.ipynb",
        description="Make each student notebook from its solution: the code between '### BEGIN SOLUTION' and "
        "'### END SOLUTION' becomes nbgrader's 'raise NotImplementedError()', '### BEGIN HIDDEN TESTS' "
        "regions are removed, outputs are cleared. The result is written as Jupyter writes it, so running "
        "this twice changes nothing.",
    )
    generate_parser.add_argument("folders", nargs="*", metavar="FOLDER", default=[DEFAULT_FOLDER],
                                 help=f"folders holding NN-name/solution.ipynb (default {DEFAULT_FOLDER})")
    generate_parser.add_argument("--check", action="store_true",
                                 help="write nothing; exit 1 if a student notebook is missing or out of date")
    generate_parser.set_defaults(run=run_generate)


def run_grade(args, out):
    result = grade(args.notebook, timeout=args.timeout, assignment=args.assignment)
    out.write(json.dumps(result, indent=2) + "\n" if args.json else format_table(result))
    return 0


def run_generate(args, out):
    stale = 0
    for folder in args.folders:
        for path, status in generate(folder, check=args.check):
            print(f"{path}: {status}", file=out)
            stale += status == "out of date"
    if stale:
        print(f"{stale} student notebook(s) out of date: run 'npmobilenet assignments generate'", file=out)
        return 1
    return 0


def main(argv=None, out=None):
    """Run ``grade`` or ``assignments`` as the ``npmobilenet`` command does; returns the exit status."""
    from ..cli import _ArgumentParser  # the command's parser: a usage mistake is one 'error:' line, status 2

    out = sys.stdout if out is None else out
    parser = _ArgumentParser(prog="npmobilenet")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    commands.required = True
    add_grading_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args, out)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
