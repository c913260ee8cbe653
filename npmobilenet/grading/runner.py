"""Running a student's notebook headless, with a time limit, and grading the functions it defines.

:func:`grade` is what ``npmobilenet grade`` runs. It starts a fresh Python process (so nothing
the notebook does can touch the grader's own process) that

1. executes the notebook's code cells in order, in one namespace, as Jupyter would, with
   ``print`` output swallowed (counted, not kept). A cell that raises is noted (which cell,
   which line, which error) and the next cell runs anyway: a student who finished task 1 and
   not task 2 (whose test cell raises ``NotImplementedError``) still gets task 1's points.
   Together the cells may take ``timeout`` seconds; then the running cell is interrupted and
   the rest skipped;
2. runs the assignment's checks on the functions the namespace holds, each with its own time
   limit (:func:`~npmobilenet.grading.checks.run_check`);
3. writes what happens, event by event, one JSON object a line, to a file the parent reads.

The parent kills the process if it outlives every limit together (a notebook can swallow the
interrupt, or hang inside C code), and assembles the result from the events written so far
(:func:`~npmobilenet.grading.report.assemble`): a score and a sentence, whatever happened.

:func:`grade_in_this_process` does steps 1 to 3 here, with no second process: faster, but the
notebook runs inside the caller. The tests use it for the many wrong solutions.

The notebook runs in the grader's process with the checks, so it could tamper with them: the
grader guards against mistakes, not against a student set on cheating.
"""

import contextlib
import io
import json
import linecache
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import ASSIGNMENTS, load_assignment
from .checks import Student, TimeLimit, describe_exception, run_check, time_limit
from .notebook import assignment_of, code_cells, read_notebook
from .report import assemble

DEFAULT_TIMEOUT = 60.0  # seconds the notebook's cells may take, together
STARTUP_SECONDS = 30.0  # a fresh Python importing NumPy and npmobilenet on a busy machine, and slack
OUTPUT_KEPT = 2000  # characters of the process's own output kept, for the message when it dies


class Events:
    """What happens while a notebook is graded, kept in a list and, when given a file, written to it a line at a time."""

    def __init__(self, file=None):
        self.items = []
        self.file = file

    def add(self, kind, **fields):
        event = {"event": kind, **fields}
        self.items.append(event)
        if self.file is not None:
            self.file.write(json.dumps(event) + "\n")
            self.file.flush()


class CountingSink(io.TextIOBase):
    """A text stream that counts what is written to it and keeps none of it: the notebook's ``print``."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def writable(self):
        return True

    def write(self, text):
        self.count += len(text)
        return len(text)


def assignment_module(notebook, path, assignment=None):
    """The checks module to grade ``notebook`` with: ``assignment``'s when given, else the one its metadata names."""
    name = assignment or assignment_of(notebook)
    if name is None:
        raise ValueError(
            f"{path} does not say which assignment it is (metadata.npmobilenet.assignment); "
            f"pass --assignment NAME (one of {', '.join(ASSIGNMENTS)})"
        )
    return load_assignment(name)  # a ValueError naming the known ones when it is not one


def grade(path, timeout=DEFAULT_TIMEOUT, assignment=None, check_seconds=None):
    """Grade the notebook in ``path`` in a fresh process; returns the result (see :mod:`~npmobilenet.grading.report`).

    ``timeout`` bounds the notebook's cells, together; ``check_seconds`` (default: each
    check's own) bounds each check. A ``ValueError`` when ``path`` is not a notebook or the
    assignment is unknown; anything that goes wrong inside the notebook is in the result.
    """
    path = Path(path)
    notebook = read_notebook(path)
    module = assignment_module(notebook, path, assignment)
    checks = [check for task in module.TASKS for check in task.checks]
    budget = timeout + sum(check.seconds if check_seconds is None else check_seconds for check in checks)
    with tempfile.TemporaryDirectory(prefix="npmobilenet-grade-") as folder:
        events_path = Path(folder) / "events.jsonl"
        command = [sys.executable, "-c", "from npmobilenet.grading.runner import child_main; child_main()",
                   str(path.resolve()), module.ID, str(timeout), str(check_seconds or 0), str(events_path)]
        returncode, timed_out, output = run_child(command, path.resolve().parent, budget + STARTUP_SECONDS)
        events = read_events(events_path)
    return assemble(module, events, notebook=path, stopped=why_stopped(events, returncode, timed_out, output, budget))


def why_stopped(events, returncode, timed_out, output, budget):
    """Why the process ended before its last event, in a sentence; None when it finished."""
    if any(event["event"] == "done" for event in events):
        return None
    if timed_out:
        return (f"the notebook and the checks outlived all their time limits together ({budget + STARTUP_SECONDS:.0f} s) "
                f"{last_activity(events)}, so the grader stopped them")
    last_output = f"; its last output: {output.strip()[-300:]}" if output.strip() else ""
    return f"the notebook ended the grader's process (exit status {returncode}) {last_activity(events)}{last_output}"


def last_activity(events):
    """``"during cell 7"`` or ``"during the check conv2d_forward/basic"``: what the process was doing last."""
    for event in reversed(events):
        if event["event"] == "cell":
            return f"during cell {event['cell']}"
        if event["event"] == "running":
            return f"during the check {event['id']}"
    return "before the notebook started"


def run_child(command, cwd, seconds):
    """Run ``command`` in a new process group, killed after ``seconds``.

    Returns ``(returncode, timed_out, the last of its output)``.
    """
    env = dict(os.environ, MPLBACKEND="Agg")  # plots draw nowhere
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    tail = []
    reader = threading.Thread(target=keep_tail, args=(process.stdout, tail), daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on Ctrl-C: never leave the notebook running
        if process.poll() is None:
            kill_group(process)
            process.wait()
    reader.join(timeout=5)
    return process.returncode, timed_out, "".join(tail)


def keep_tail(stream, tail):
    """Read ``stream`` to its end, keeping only its last :data:`OUTPUT_KEPT` characters in ``tail[0]``."""
    kept = ""
    for chunk in iter(lambda: stream.read1(65536), b""):
        kept = (kept + chunk.decode("utf-8", "replace"))[-OUTPUT_KEPT:]
    tail.append(kept)


def kill_group(process):
    """Kill ``process`` and everything it started."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()


def read_events(path):
    """The events the process wrote, one JSON object a line; a last line cut short by a kill is dropped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def child_main(argv=None):
    """The process :func:`grade` starts: ``NOTEBOOK ASSIGNMENT TIMEOUT CHECK_SECONDS EVENTS_FILE``."""
    path, name, timeout, check_seconds, events_path = sys.argv[1:] if argv is None else argv
    with open(events_path, "w", encoding="utf-8") as file:
        run_notebook_and_checks(read_notebook(path), load_assignment(name), float(timeout),
                                float(check_seconds) or None, Events(file))
    os._exit(0)  # now: a thread the notebook started must not keep the process alive


def grade_in_this_process(notebook, assignment=None, timeout=DEFAULT_TIMEOUT, check_seconds=None, path="<notebook>"):
    """Grade ``notebook`` (a dict) here, without a second process; returns the result as :func:`grade` does."""
    module = assignment_module(notebook, path, assignment)
    events = Events()
    run_notebook_and_checks(notebook, module, timeout, check_seconds, events)
    return assemble(module, events.items, notebook=path)


def run_notebook_and_checks(notebook, module, timeout, check_seconds, events):
    """Steps 1 to 3: run the cells, then every check of ``module``, reporting to ``events``."""
    namespace = {"__name__": "__main__", "display": print}  # display(): Jupyter's, here a print
    printed = CountingSink()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        cell_errors = run_cells(notebook, namespace, timeout, events)
        student = Student(namespace, cell_errors)
        for task in module.TASKS:
            for check in task.checks:
                events.add("running", id=check.id)
                events.add("check", task=task.id, **run_check(check, student, check_seconds))
    events.add("done", printed=printed.count)


def run_cells(notebook, namespace, seconds, events):
    """Execute the notebook's code cells in order in ``namespace``, ``seconds`` for them all; returns the error messages."""
    deadline = time.monotonic() + seconds
    errors = []
    for number, source in code_cells(notebook):
        events.add("cell", cell=number)
        message, stop = run_cell(number, source, namespace, deadline - time.monotonic(), seconds)
        if message:
            errors.append(message)
            events.add("cell_error", cell=number, message=message)
        if stop:
            break
    return errors


def run_cell(number, source, namespace, seconds, total_seconds):
    """Execute one cell; returns ``(message, stop)``: what went wrong (None if nothing), and whether to stop here."""
    filename = f"<cell {number}>"
    code = python_only(source)
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)  # tracebacks show the line
    first_line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    label = f"cell {number} ({first_line[:50]}{'...' if len(first_line) > 50 else ''})"
    if seconds <= 0:
        return f"{label} and the cells after it did not run: the notebook's {total_seconds:g} s were up", True
    try:
        compiled = compile(code, filename, "exec")
    except SyntaxError as error:
        return f"{label}: SyntaxError at line {error.lineno}: {error.msg}; nothing in this cell ran", False
    try:
        with time_limit(seconds):
            exec(compiled, namespace)
    except TimeLimit:
        return (f"{label} was still running when the notebook's {total_seconds:g} s were up: it was stopped, and "
                f"the cells after it did not run (a loop that never ends? grade with a longer --timeout if it is "
                f"just slow)"), True
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # SystemExit too: exit() in a cell must not end the grading
        hint = " (a task not done yet)" if isinstance(error, NotImplementedError) else ""
        return f"{label}: {describe_exception(error)}{hint}", False
    return None, False


def python_only(source):
    """The cell with the lines IPython alone runs (those starting with ``%`` or ``!``) turned into ``pass``."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass  # skipped by the grader: " + stripped
        lines.append(line)
    return "\n".join(lines) + "\n"
