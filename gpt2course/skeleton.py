"""Skeletons are made from solutions, so the two cannot drift apart.

A solution marks each learner task with a numbered TODO comment and fences the
answer between ``#>>> TODO n`` and ``#<<< TODO n``. The skeleton is the same
file with each fenced answer replaced by ``raise NotImplementedError(...)``.
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2course import ROOT

OPEN = re.compile(r"^(\s*)#>>> TODO (\d+)\s*$")
CLOSE = re.compile(r"^(\s*)#<<< TODO (\d+)\s*$")


def solution_path(step: int) -> Path:
    return ROOT / "solutions" / f"solution_{step:02d}.py"


def step_path(step: int, root: Path | None = None) -> Path:
    return (root or ROOT) / "steps" / f"step_{step:02d}.py"


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
            out.append(f'{indent}raise NotImplementedError("step {step:02d}, TODO {num}")')
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


def pristine_skeleton(step: int) -> str:
    return skeleton_from_solution(solution_path(step).read_text(), step)


def todo_numbers(text: str) -> list[int]:
    return [num for num, _, _ in regions(text)]


def write_all() -> list[Path]:
    """Regenerates every steps/step_NN.py from its solution (maintainers only)."""
    written = []
    for sol in sorted((ROOT / "solutions").glob("solution_*.py")):
        step = int(sol.stem.split("_")[1])
        path = step_path(step)
        path.write_text(skeleton_from_solution(sol.read_text(), step))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print("wrote", p.relative_to(ROOT))
