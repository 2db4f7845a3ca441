"""Reads course.toml: the single list of steps, titles and hints."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

MANIFEST = Path(__file__).with_name("course.toml")


@functools.lru_cache(maxsize=1)
def steps() -> dict[int, dict]:
    data = tomllib.loads(MANIFEST.read_text())
    return {int(s["number"]): s for s in data["step"]}


def step(number: int) -> dict:
    try:
        return steps()[number]
    except KeyError:
        raise SystemExit(f"there is no step {number}; steps are {min(steps())}..{max(steps())}") from None


def numbers() -> list[int]:
    return sorted(steps())


def parse_step(text: str) -> int:
    """'s07', '07', '7', 'step_07' -> 7."""
    digits = "".join(ch for ch in str(text) if ch.isdigit())
    if not digits:
        raise SystemExit(f"not a step: {text!r} (write it like s07)")
    n = int(digits)
    step(n)
    return n
