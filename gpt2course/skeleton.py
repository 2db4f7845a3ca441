"""The TODO markers, in one place: skeletons are made from solutions, so the two cannot drift apart.

A solution marks each learner task with a numbered ``# TODO n`` comment and fences the
answer between ``#>>> TODO n`` and ``#<<< TODO n``. The skeleton is the same file with
each fenced answer replaced by ``raise NotImplementedError("step NN, TODO n")``, and that
text is how every command finds the TODOs still open in a learner's file.

    python -m gpt2course.skeleton      regenerate steps/ from solutions/ (maintainers)
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2course.course import numbers, solution_file, step_file

OPEN = re.compile(r"^(\s*)#>>> TODO (\d+)\s*$")
CLOSE = re.compile(r"^(\s*)#<<< TODO (\d+)\s*$")
RAISED = re.compile(r"step (\d+), TODO (\d+)")  # in the message of the NotImplementedError
RAISE_LINE = re.compile(r'raise NotImplementedError\("step (\d+), TODO (\d+)"\)')


def raise_line(step: int, todo: int) -> str:
    return f'raise NotImplementedError("step {step:02d}, TODO {todo}")'


def raised_todo(message: str) -> tuple[int, int] | None:
    """(step, todo) from a skeleton's NotImplementedError message, or None."""
    m = RAISED.search(message)
    return (int(m.group(1)), int(m.group(2))) if m else None


def open_todos(text: str, step: int) -> list[int]:
    """The TODOs of a step file that still raise NotImplementedError (a plain text scan)."""
    return sorted({int(m.group(2)) for m in RAISE_LINE.finditer(text) if int(m.group(1)) == step})


def todo_line(text: str, todo: int) -> int | None:
    """The line number of the ``# TODO n`` comment that explains a TODO."""
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*# TODO {todo}\b", line):
            return i
    return None


def regions(text: str) -> list[tuple[int, int, int]]:
    """(todo number, first line index inside, closing line index) for each fenced region."""
    out, open_at = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := OPEN.match(line):
            if open_at is not None:
                raise ValueError(f"line {i + 1}: TODO {m.group(2)} opens inside TODO {open_at[0]}")
            open_at = (int(m.group(2)), i + 1)
        elif m := CLOSE.match(line):
            if open_at is None or open_at[0] != int(m.group(2)):
                raise ValueError(f"line {i + 1}: TODO {m.group(2)} closes but was not open")
            out.append((open_at[0], open_at[1], i))
            open_at = None
    if open_at is not None:
        raise ValueError(f"TODO {open_at[0]} is never closed")
    return out


def skeleton_from_solution(text: str, step: int) -> str:
    lines = text.splitlines()
    out: list[str] = []
    spans = {start: (num, end) for num, start, end in regions(text)}
    i = 0
    while i < len(lines):
        if i in spans:
            num, end = spans[i]
            indent = OPEN.match(lines[i - 1]).group(1)
            out.append(indent + raise_line(step, num))
            i = end
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out) + "\n"


def outside_todos(text: str) -> str:
    """The text with every fenced region emptied: what a skeleton and its solution share."""
    lines = text.splitlines()
    drop = set()
    for _, start, end in regions(text):
        drop.update(range(start, end))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop) + "\n"


def completed(text: str) -> str:
    """A solution as a learner who finished the step has it: the fence lines dropped."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not (OPEN.match(line) or CLOSE.match(line)))


def pristine_skeleton(step: int) -> str:
    return skeleton_from_solution(solution_file(step).read_text(), step)


def shipped_skeleton(step: int) -> str | None:
    """The untouched skeleton of a step, or None when its solution is missing or unreadable."""
    try:
        return pristine_skeleton(step)
    except (OSError, ValueError):
        return None


def todo_numbers(text: str) -> list[int]:
    return [num for num, _, _ in regions(text)]


def write_all() -> list[Path]:
    """Regenerates every steps/step_NN.py from its solution (maintainers only)."""
    written = []
    for step in numbers():
        path = step_file(step)
        path.write_text(pristine_skeleton(step))
        written.append(path)
    return written


if __name__ == "__main__":
    from gpt2course.course import display

    for p in write_all():
        print("wrote", display(p))
