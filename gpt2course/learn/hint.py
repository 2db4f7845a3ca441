"""`hint`: the hints of course.toml for a step, one at a time, from vague to precise.

It remembers which hints were seen (``.progress/hints.json``); after the last one it points
to the reference answer. Standard library only.
"""

from __future__ import annotations

from gpt2course import course
from gpt2course.course import display
from gpt2course.learn.progress import step_arg
from gpt2course.skeleton import open_todos, todo_line
from gpt2course.state import load_json, read_text, save_json

HINTS_FILE = "hints.json"


def cmd_hint(args) -> int:
    step = step_arg(args)
    info = course.step(step)
    hints = list(info.get("hints") or [])
    n = f"{step:02d}"
    print(f"Step {n} — {info['title']}")
    if not hints:
        print(f"No hints are written for step {n}. The reference answer is solutions/solution_{n}.py.")
        return 0
    path = course.PROGRESS_DIR / HINTS_FILE
    seen_all = load_json(path)
    seen = min(int(seen_all.get(n, 0) or 0), len(hints))
    if args.all:
        for i, h in enumerate(hints, 1):
            print(f"\n(hint {i} of {len(hints)}) {h}")
        seen_all[n] = len(hints)
        save_json(path, seen_all)
    elif seen >= len(hints):
        print(f"\nYou have seen all {len(hints)} hints for step {n}; "
              f"{course.command('hint', step, args='--all')} shows them again.")
        print(f"Still stuck? The reference answer is {display(course.solution_file(step))}: each TODO's "
              f"answer sits between `#>>> TODO k` and `#<<< TODO k` there; "
              f"{course.command('check', step, target='solutions')} shows it passing.")
    else:
        print(f"\n(hint {seen + 1} of {len(hints)}) {hints[seen]}")
        seen_all[n] = seen + 1
        save_json(path, seen_all)
        if seen + 1 < len(hints):
            print(f"\nStill stuck? {course.command('hint', step)} again shows hint {seen + 2} of {len(hints)}.")
        else:
            print(f"\nThat was the last hint; the reference answer is solutions/solution_{n}.py.")
    text = read_text(course.step_file(step))
    if text is not None:
        todos = open_todos(text, step)
        if todos:
            where = ", ".join(f"TODO {t}" + (f" (line {todo_line(text, t)})" if todo_line(text, t) else "")
                              for t in todos)
            print(f"\nStill open in {display(course.step_file(step))}: {where}.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("hint", help="the next hint for a step (--all: every hint)")
    p.add_argument("step", nargs="?", help="s07, 07 or 7 (default: the first step not passing yet)")
    p.add_argument("--all", action="store_true", help="show every hint of the step")
    p.set_defaults(func=cmd_hint)
