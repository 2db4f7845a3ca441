"""`progress`: one table of every step, and the one thing to do next (as rustlings says it).

It checks only the steps the learner has edited (an untouched skeleton is "not started"
without running anything), through ``gpt2course.check.command.run_check``, and reuses the
verdicts remembered in the one verdict cache when nothing that decides them changed.
Standard library only.
"""

from __future__ import annotations

import re
import shutil
import sys
import time

from gpt2course import course
from gpt2course.check import verdicts
from gpt2course.check.command import add_target_device, run_check
from gpt2course.course import display
from gpt2course.skeleton import open_todos, shipped_skeleton, todo_line
from gpt2course.state import read_text

NOT_STARTED, DONE, FAILING, MISSING, NO_CHECK, ERROR = (
    "not started", "done", "failing", "missing", "no check yet", "error")


def step_status(step: int, target: str = course.DEFAULT_TARGET, device: str | None = None, use_cache: bool = True,
                say=print, run: bool = True) -> dict:
    """Where a learner stands on one step: status, detail, and whether the check ran now."""
    path = course.step_file(step, target)
    text = read_text(path)
    row = {"step": step, "title": course.step(step)["title"], "path": path, "ran": False,
           "cached": False, "detail": "", "result": None}
    if text is None:
        return {**row, "status": MISSING, "detail": f"{display(path)} is missing: " + course.command("reset", step)
                + " restores the skeleton"}
    if text == shipped_skeleton(step):
        return {**row, "status": NOT_STARTED, "detail": "untouched skeleton"}
    if not course.test_file(step).exists():
        todos = open_todos(text, step)
        detail = "edited; " + (f"TODO {todos[0]} still open" if todos else "all TODOs filled in")
        return {**row, "status": NO_CHECK, "detail": detail + " (this step's check is not written yet)"}
    result = verdicts.recall(step, verdicts.cache_key(step, target, device), target) if use_cache else None
    if result is not None:
        row["cached"] = True
    elif not run:
        return {**row, "status": "unchecked", "detail": "edited, not checked yet"}
    else:
        say(f"running the check for step {step:02d} ({row['title']}) ...")
        t0 = time.time()
        result = run_check(step, target, device, show=False, relay=lambda line: say("    " + line.strip()))
        row["ran"] = True
        say(f"    step {step:02d}: {_word(result)} ({time.time() - t0:.1f}s)")
    row["result"] = result
    status = result.get("status")
    first = result.get("first_failure") or {}
    message = (first.get("message") or "").strip()
    if status == "passed":
        return {**row, "status": DONE, "detail": f"{result.get('passed')}/{result.get('total')} checks pass"}
    if status == "error":
        return {**row, "status": ERROR, "detail": "the check could not run",
                "failure": first.get("message", ""), "check": "running the check", "message": ""}
    if "not implemented yet: start at TODO 1" in message:
        return {**row, "status": NOT_STARTED, "detail": "edited, but TODO 1 still raises NotImplementedError"}
    message = re.sub(rf"^step {step:02d}:\s*", "", message.splitlines()[0] if message else "")
    check = first.get("check") or "a check"
    return {**row, "status": FAILING, "detail": f"{result.get('passed')}/{result.get('total')} checks pass",
            "failure": f"{check}: {message}", "check": check, "message": message}


def _word(result: dict) -> str:
    return {"passed": "passes", "failed": "not passing yet"}.get(result.get("status"), "the check did not run")


def next_step_line(rows: list[dict]) -> str:
    """The one thing to do next, as rustlings says it."""
    todo = [r for r in rows if r["status"] != DONE]
    if not todo:
        return ("Next: all steps pass. Generate text with the model you wrote: "
                + course.command("gpt2", args=["--model", "steps", "--prompt", "Hello, my name is"]))
    r = todo[0]
    n, path = r["step"], display(r["path"])
    if r["status"] == FAILING:
        return (f"Next: step {n:02d} — in {path}, the check \"{r['check']}\" fails: {r['message']}\n"
                f"      Re-check with {course.command('check', n)}, or {course.command('watch', n)} to "
                f"re-check on every save; stuck? {course.command('hint', n)}")
    if r["status"] == MISSING:
        return f"Next: step {n:02d} — {r['detail']}"
    if r["status"] == ERROR:
        return (f"Next: step {n:02d} — its check could not run; run {course.command('check', n)} to see why, "
                f"and {course.command('doctor')} to check your setup")
    if r["status"] == NO_CHECK:
        return (f"Next: step {n:02d} — work on {path}; its check is not written yet, "
                f"so compare with solutions/solution_{n:02d}.py")
    text = read_text(r["path"]) or ""
    todos = open_todos(text, n) or [1]
    line = todo_line(text, todos[0])
    where = f"TODO {todos[0]}" + (f" (line {line})" if line else "")
    return f"Next: step {n:02d} — open {path} at {where}, then run {course.command('check', n)}"


def render_table(rows: list[dict], width: int = 100) -> str:
    done = sum(r["status"] == DONE for r in rows)
    title_w = max([len(r["title"]) for r in rows] + [5])
    head = f"    {'step':<6}{'title':<{title_w}}  {'status':<12}  details"
    lines = [f"Your progress: {done} of {len(rows)} steps done", "", head]
    for r in rows:
        mark = {DONE: "[x]", FAILING: "[!]", ERROR: "[?]", MISSING: "[?]"}.get(r["status"], "[ ]")
        prefix = f"{mark} {r['step']:02d}    {r['title']:<{title_w}}  {r['status']:<12}  "
        cached = " (cached)" if r.get("cached") else ""
        lines.append(prefix + one_line(r["detail"], max(width - len(prefix) - len(cached), 30)) + cached)
        if r.get("failure"):
            lines.append("          " + one_line(f"first failure: {r['failure']}", width - 10))
    return "\n".join(lines)


def one_line(text: str, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def cmd_progress(args) -> int:
    target = args.target
    rows = []
    try:
        for n in course.numbers():
            rows.append(step_status(n, target, args.device, use_cache=not args.no_cache,
                                    say=lambda msg: print(msg, flush=True)))
    except KeyboardInterrupt:
        print("\nstopped; the steps checked so far are remembered in .progress/")
        return 130
    width = max(shutil.get_terminal_size().columns, 80) if sys.stdout.isatty() else 160
    print()
    print(render_table(rows, width))
    cached = sum(r["cached"] for r in rows)
    if cached:
        print(f"\n{cached} result(s) reused from .progress/ because their files did not change "
              f"({course.command('progress', args='--no-cache')} checks them again).")
    print()
    print(next_step_line(rows))
    return 0


def current_step(target: str = course.DEFAULT_TARGET) -> int | None:
    """The first step not known to pass (untouched, failing, or edited since its last check).

    Runs no check: it reads only the files and the results remembered in .progress/.
    """
    for n in course.numbers():
        if step_status(n, target, run=False)["status"] != DONE:
            return n
    return None


def step_arg(args, target: str = course.DEFAULT_TARGET) -> int:
    """The step named on the command line, or the current one when none is."""
    if args.step:
        return course.parse_step(args.step)
    n = current_step(target)
    if n is None:
        raise SystemExit("Every step passes; name one, e.g. s07.")
    print(f"(no step given: using step {n:02d}, the first one not passing yet)")
    return n


def register(sub) -> None:
    p = sub.add_parser("progress", help="a table of every step and what to do next")
    add_target_device(p)
    p.add_argument("--no-cache", action="store_true",
                   help="check every edited step again, even if its files did not change")
    p.set_defaults(func=cmd_progress)
