"""The grading result: gathered from the runner's events, printed as a score table or as JSON.

The runner reports what happens as *events* (a cell started, a cell failed, a check ran, all
done), so that when its process had to be killed the events written so far still count: the
checks that ran keep their scores, the others score 0 with the reason. :func:`assemble` turns
the events into the result, a dict that ``npmobilenet grade --json`` prints as it is::

    {"notebook": ..., "assignment": "01-conv2d-relu6", "title": ..., "status": "graded",
     "score": 78, "max_score": 100,
     "tasks": [{"id": "relu6", "title": ..., "score": 8, "max_score": 10}, ...],
     "checks": [{"id": ..., "task": ..., "name": ..., "points": 2, "score": 0, "hint": ..., "seconds": ...}, ...],
     "notes": ["cell 7 (def conv2d_forward...): SyntaxError ...", ...]}

``status`` is ``"graded"`` when every check ran, ``"stopped"`` when the run was cut short.
"""

import textwrap

PRINTED_NOTE_ABOVE = 100_000  # characters printed by the notebook before the result says so


def assemble(module, events, notebook="", stopped=None):
    """The result of grading ``notebook`` against assignment ``module`` from the runner's ``events``.

    ``stopped`` is the reason the run ended early (None when it finished).
    """
    ran = {event["id"]: {key: value for key, value in event.items() if key not in ("event", "task")}
           for event in events if event["event"] == "check"}
    done = next((event for event in events if event["event"] == "done"), None)
    not_run = f"not run: {stopped}" if stopped else "not run"
    checks, tasks = [], []
    for task in module.TASKS:
        for check in task.checks:
            result = ran.get(check.id) or {"id": check.id, "name": check.name, "points": check.points,
                                           "score": 0, "hint": not_run, "seconds": 0.0}
            checks.append({"task": task.id, **result})
        scores = [result["score"] for result in checks if result["task"] == task.id]
        tasks.append({"id": task.id, "title": task.title, "score": sum(scores), "max_score": task.points})
    notes = [event["message"] for event in events if event["event"] == "cell_error"]
    if stopped:
        notes.append(f"The grading stopped early: {stopped}")
    if done and done["printed"] > PRINTED_NOTE_ABOVE:
        notes.append(f"The notebook printed {done['printed']:,} characters; the grader ignores them.")
    return {
        "notebook": str(notebook),
        "assignment": module.ID,
        "title": module.TITLE,
        "status": "graded" if done and not stopped else "stopped",
        "score": sum(task["score"] for task in tasks),
        "max_score": sum(task["max_score"] for task in tasks),
        "tasks": tasks,
        "checks": checks,
        "notes": notes,
    }


def format_table(result, width=100):
    """The result as a student reads it: a score per check, task by task, then what to fix, then notes."""
    lines = [f"{result['notebook']}: assignment {result['assignment']}, {result['title']}", ""]
    for task in result["tasks"]:
        lines.append(f"  {task['title']}  ({task['score']}/{task['max_score']})")
        for check in (check for check in result["checks"] if check["task"] == task["id"]):
            mark = "ok  " if check["score"] == check["points"] else "FAIL"
            lines.append(f"    {check['score']:>2}/{check['points']:<2} {mark} {check['name']}")
    lines += ["", f"score: {result['score']}/{result['max_score']}"]
    failed = [check for check in result["checks"] if check["score"] < check["points"]]
    if failed:
        lines += ["", "What to fix:"]
        for check in failed:
            lines.append(f"  {check['name']} (0/{check['points']})")
            lines += textwrap.wrap(check["hint"], width, initial_indent="    ", subsequent_indent="    ")
    if result["notes"]:
        lines += ["", "Running the notebook:"]
        for note in result["notes"]:
            lines += textwrap.wrap(note, width, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"
