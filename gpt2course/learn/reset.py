"""`reset`: a step's skeleton again, and never a lost line: the learner's file is copied to
``.backups/step_NN-YYYYmmdd-HHMMSS.py`` first (never over an existing backup). Standard library only.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from gpt2course import course
from gpt2course.course import display
from gpt2course.skeleton import shipped_skeleton


def backup_file(path: Path, backups: Path, stamp: str) -> Path:
    """Copies ``path`` to backups/<stem>-<stamp>.py without ever replacing an existing file."""
    backups.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    for i in range(1000):
        dest = backups / f"{path.stem}-{stamp}{'' if i == 0 else f'-{i}'}{path.suffix}"
        try:
            with open(dest, "xb") as f:  # "x": fails if the file exists, so no backup is overwritten
                f.write(data)
        except FileExistsError:
            continue
        if dest.read_bytes() != data:
            raise OSError(f"the backup {dest} does not read back as written")
        return dest
    raise OSError(f"could not find a free backup name in {backups}")


def reset_step(step: int, path: Path | None = None, backups: Path | None = None,
               stamp: str | None = None) -> tuple[str, Path | None]:
    """Restores a step's skeleton; returns (what happened, the backup or None)."""
    path = path or course.step_file(step)
    backups = backups or course.BACKUPS_DIR
    fresh = shipped_skeleton(step)
    if fresh is None:
        raise SystemExit(f"step {step:02d}: solutions/solution_{step:02d}.py is missing, so there is no "
                         "skeleton to restore")
    current = path.read_bytes() if path.exists() else None
    if current is not None and current == fresh.encode():
        return "unchanged", None
    backup = None
    if current is not None:
        backup = backup_file(path, backups, stamp or datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.reset.tmp")
    tmp.write_text(fresh)
    os.replace(tmp, path)
    return ("restored" if current is not None else "created"), backup


def cmd_reset(args) -> int:
    step = course.parse_step(args.step)
    n, path = f"{step:02d}", course.step_file(step)
    what, backup = reset_step(step, path)
    if what == "unchanged":
        print(f"{display(path)} is already the untouched skeleton of step {n}; nothing to reset, "
              "no backup made.")
        return 0
    if backup is not None:
        print(f"Saved your step {n} to {display(backup)}")
        print(f"  (to get it back: cp {display(backup)} {display(path)})")
    else:
        print(f"{display(path)} was missing; nothing to back up.")
    print(f"{display(path)} is the skeleton again: start at TODO 1, then run {course.command('check', step)}.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("reset", help="restore a step's skeleton (your file is backed up first)")
    p.add_argument("step", help="s07, 07 or 7")
    p.set_defaults(func=cmd_reset)
