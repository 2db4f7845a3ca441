"""Shared tooling for the course: weights, reference model, comparisons, the CLI.

Learners never need to read this package; the step files and the book are theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step_file(step: int, target: str | None = None, root: Path | None = None) -> Path:
    """The file that holds step ``step`` for a target: "steps" (the learner's files),
    "solutions", or a folder (a student's submission: DIR/step_NN.py or DIR/steps/step_NN.py).
    No target: $GPT2_TARGET, else "steps". Standard library only: the workflow commands use
    it before the course's packages are installed. ``root``: the course folder (default ROOT)."""
    target, root = target or os.environ.get("GPT2_TARGET") or "steps", root or ROOT
    if target == "steps":
        return root / "steps" / f"step_{step:02d}.py"
    if target == "solutions":
        return root / "solutions" / f"solution_{step:02d}.py"
    base = Path(target)
    for candidate in (base / f"step_{step:02d}.py", base / "steps" / f"step_{step:02d}.py"):
        if candidate.exists():
            return candidate
    return base / "steps" / f"step_{step:02d}.py"
