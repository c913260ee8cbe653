"""The check framework: a check, a task, the student's functions as the grader sees them, and time limits.

A :class:`Check` is a name, some points and a function ``run(student)``. The function calls the
student's code through :class:`Student`, compares what comes back (with the helpers of
:mod:`~npmobilenet.grading.compare`), and either returns, and the check earns its points, or
raises :class:`CheckFailed` with a hint: what was wrong, on which input, and where to look. A
check earns all its points or none.

:func:`run_check` runs one check and never raises: whatever the student's code does (raise,
return nonsense, loop forever, call ``sys.exit``), the result is a score and a sentence.
"""

import contextlib
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

CELL_PREFIX = "<cell "  # the runner compiles notebook cell N under the file name "<cell N>"


class CheckFailed(Exception):
    """A check did not pass; the message is the hint the student reads.

    ``about_input`` is False for a failure that does not depend on the input (a function not
    written, not defined): no need then to say which input the check was using.
    """

    def __init__(self, hint, about_input=True):
        super().__init__(hint)
        self.about_input = about_input


class TimeLimit(BaseException):
    """Raised inside running code when its time is up.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a student's ``except Exception:``
    does not swallow it.
    """


@dataclass(frozen=True)
class Check:
    """One graded check: ``run(student)`` returns (all the points) or raises :class:`CheckFailed` (none).

    ``id`` is short and stable (``"conv2d_backward/strided"``): the tests and ``--json`` use it.
    ``name`` is what a student reads in the score table. ``seconds`` bounds the time the
    student's code may take in this check; ``timeout_hint`` says what that usually means.
    """

    id: str
    name: str
    points: int
    run: Callable
    seconds: float = 10.0
    timeout_hint: str = "a loop that never ends?"


@dataclass(frozen=True)
class Task:
    """A task of an assignment: its checks. ``id`` is the nbgrader ``grade_id`` of the task's test cell."""

    id: str
    title: str
    checks: tuple

    @property
    def points(self):
        return sum(check.points for check in self.checks)


class Student:
    """The notebook's namespace, seen through the functions the grader calls.

    ``cell_errors`` are the runner's messages about cells that failed; a hint about a missing
    function mentions them, since a cell that failed may never have defined it.
    """

    def __init__(self, namespace, cell_errors=()):
        self.namespace = namespace
        self.cell_errors = list(cell_errors)

    def function(self, name):
        """The student's function ``name``, or :class:`CheckFailed` saying why there is none to grade."""
        function = self.namespace.get(name)
        if function is None:
            failed = f" (a cell failed: {self.cell_errors[0]})" if self.cell_errors else ""
            raise CheckFailed(f"{name} is not defined: write it in its task's cell, under exactly that name{failed}",
                              about_input=False)
        if not callable(function):
            raise CheckFailed(f"{name} should be a function, but the notebook made it a {type(function).__name__}",
                              about_input=False)
        module = getattr(function, "__module__", None) or ""
        if module.split(".")[0] == "npmobilenet":
            own = f"{module}.{getattr(function, '__qualname__', name)}"
            raise CheckFailed(f"{name} is npmobilenet's own ({own}), imported, not written: write your own",
                              about_input=False)
        return function

    def call(self, name, *args, copy=True):
        """Call the student's ``name(*args)``; its exceptions become :class:`CheckFailed` with the line that raised.

        Array arguments are copied first (``copy=False`` passes them as they are, for a check
        that wants to see them changed in place), so a function that writes into its input
        spoils no other check.
        """
        function = self.function(name)
        if copy:
            args = tuple(arg.copy() if isinstance(arg, np.ndarray) else arg for arg in args)
        try:
            return function(*args)
        except (TimeLimit, KeyboardInterrupt):
            raise
        except NotImplementedError as error:
            raise CheckFailed(not_written(name, error), about_input=False) from None
        except BaseException as error:  # SystemExit too: a student's code must not end the grading
            raise CheckFailed(f"{name} raised {describe_exception(error)}") from None


def not_written(name, error):
    """The hint for a ``NotImplementedError``: the function not written yet may be one that ``name`` calls."""
    frames = notebook_frames(error)
    inner = frames[-1].name if frames else name
    if inner in (name, "<module>"):
        return f"{name} is not written yet: it raises NotImplementedError"
    return f"{name} calls {inner}, which is not written yet: it raises NotImplementedError"


def describe_exception(error):
    """``"ValueError: the message, at cell 7, line 3: out = cols @ w"``: the error and the notebook line that raised it."""
    message = str(error).strip().replace("\n", " ")
    if len(message) > 300:
        message = message[:297] + "..."
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text + notebook_location(error)


def notebook_location(error):
    """``", at cell 7, line 3: out = cols @ w"`` for the last notebook line in the error's traceback, or ``""``."""
    frames = notebook_frames(error)
    if not frames:
        return ""
    frame = frames[-1]
    line = (frame.line or "").strip()
    return f", at {frame.filename[1:-1]}, line {frame.lineno}" + (f": {line}" if line else "")


def notebook_frames(error):
    """The frames of the error's traceback that run the notebook's code, outermost first."""
    return [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename.startswith(CELL_PREFIX)]


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`TimeLimit` inside the block after ``seconds`` (by ``SIGALRM``).

    Where signals cannot interrupt (Windows, or a thread other than the main one) the block
    runs unbounded, and the runner's parent process, which kills the whole run after its own
    limit, is the only guard.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise TimeLimit(seconds)

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_check(check, student, seconds=None):
    """Run one check; returns ``{"id", "name", "points", "score", "hint", "seconds"}``. Never raises.

    ``seconds`` overrides the check's own time limit (the tests use a short one).
    """
    limit = check.seconds if seconds is None else seconds
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), time_limit(limit):
            warnings.simplefilter("ignore")
            check.run(student)
        hint = ""
    except CheckFailed as failure:
        hint = str(failure)
    except TimeLimit:
        hint = f"did not finish within {limit:g} s: {check.timeout_hint}"
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # the student's result broke the check's own code
        hint = f"the grader could not use your result: {describe_exception(error)}"
    return {
        "id": check.id,
        "name": check.name,
        "points": check.points,
        "score": 0 if hint else check.points,
        "hint": hint,
        "seconds": round(time.perf_counter() - started, 3),
    }
