"""The course's facts, one owner each: its steps, its folders, its defaults, how its commands are spelled.

Standard library only: ``doctor`` and ``progress`` read it before any package is installed.

    >>> from gpt2course import course
    >>> course.step(7)["title"]
    'Multi-head attention'
    >>> course.step_file(7).name, course.step_file(7, "solutions").name
    ('step_07.py', 'solution_07.py')
    >>> course.command("hint", 7)
    '`make hint STEP=07` (pixi run hint s07)'
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

# --------------------------------------------------------------------------- folders

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gpt2course"
MANIFEST = PACKAGE / "course.toml"
STEPS_DIR = ROOT / "steps"            # the learner's files
SOLUTIONS_DIR = ROOT / "solutions"    # the reference answers (the source of truth)
TESTS_DIR = ROOT / "tests"            # tests/test_step_NN.py is step NN's check
PROGRESS_DIR = ROOT / ".progress"     # remembered verdicts and hints seen (git-ignored)
BACKUPS_DIR = ROOT / ".backups"       # what `reset` replaced (git-ignored)
REQUIREMENTS = ROOT / "requirements.txt"  # the pins; pixi.toml repeats them (tests/test_tasks.py)
VENV = ROOT / ".venv"

# --------------------------------------------------------------------------- defaults

TARGETS = ("steps", "solutions")  # or a folder holding step_NN.py files
DEFAULT_TARGET = "steps"
DEVICES = ("cpu", "gpu")
DEFAULT_DEVICE = "cpu"
PYTHON_WANTED = (3, 11)


# --------------------------------------------------------------------------- the manifest

@functools.lru_cache(maxsize=1)
def steps() -> dict[int, dict]:
    """number -> that step's entry of course.toml (title, exports, hints)."""
    import tomllib  # here, not at the top: `python -m gpt2course` says "needs 3.11" before this runs

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


# --------------------------------------------------------------------------- files

def step_file(number: int, target: str = DEFAULT_TARGET, root: Path | None = None) -> Path:
    """The file that holds step ``number`` for a target: "steps" (the learner's files),
    "solutions", or a folder (a student's submission: DIR/step_NN.py or DIR/steps/step_NN.py).
    ``root``: the course folder (default ROOT)."""
    root = root or ROOT
    if target == "steps":
        return root / "steps" / f"step_{number:02d}.py"
    if target == "solutions":
        return root / "solutions" / f"solution_{number:02d}.py"
    base = Path(target)
    for candidate in (base / f"step_{number:02d}.py", base / "steps" / f"step_{number:02d}.py"):
        if candidate.exists():
            return candidate
    return base / "steps" / f"step_{number:02d}.py"


def solution_file(number: int, root: Path | None = None) -> Path:
    return step_file(number, "solutions", root)


def test_file(number: int, root: Path | None = None) -> Path:
    return (root or ROOT) / "tests" / f"test_step_{number:02d}.py"


def display(path: Path) -> str:
    """A path as the learner sees it from the course folder."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- commands

# Every task a learner, instructor or maintainer is told to run: the Makefile and pixi.toml
# offer exactly these (tests/test_tasks.py), plus s01..s15.
TASKS = ("setup", "install", "warm", "check-all", "test", "gpt2", "serve", "download-gpt2", "eval", "lens",
         "bench", "book", "book-build", "grade", "progress", "watch", "hint", "reset", "doctor")
STEP_TASKS = ("watch", "hint", "reset")  # take a step: `make hint STEP=07` / `pixi run hint s07`
MAKE_ONLY = ("setup", "install")           # pixi installs by itself


def _args_text(args: str | list[str] | None) -> str:
    if args is None:
        return ""
    return args if isinstance(args, str) else " ".join(shlex.quote(a) for a in args)


def make(task: str, number: int | None = None, *, args: str | list[str] | None = None,
         target: str | None = None, device: str | None = None) -> str:
    """How ``make`` spells a task: make s07, make hint STEP=07, make gpt2 ARGS='--greedy'."""
    words = ["make", _task(task, number)]
    if number is not None and task in STEP_TASKS:
        words.append(f"STEP={number:02d}")
    if target and target != DEFAULT_TARGET:
        words.append(f"TARGET={target}")
    if device:
        words.append(f"DEVICE={device}")
    text = _args_text(args)
    if text:
        words.append(f"ARGS={shlex.quote(text)}")
    return " ".join(words)


def pixi(task: str, number: int | None = None, *, args: str | list[str] | None = None,
         target: str | None = None, device: str | None = None) -> str | None:
    """How pixi spells it (None for make-only tasks): pixi run s07, pixi run hint s07 --all."""
    if task in MAKE_ONLY:
        return None
    words = ["pixi", "run", _task(task, number)]
    if number is not None and task in STEP_TASKS:
        words.append(f"s{number:02d}")
    if target and target != DEFAULT_TARGET:
        words.append(f"--target {target}")
    if device:
        words.append(f"--device {device}")
    text = _args_text(args)
    if text:
        words.append(text)
    return " ".join(words)


def command(task: str, number: int | None = None, **kw) -> str:
    """A command as a learner reads it: `make hint STEP=07` (pixi run hint s07)."""
    p = pixi(task, number, **kw)
    return f"`{make(task, number, **kw)}`" + (f" ({p})" if p else "")


def _task(task: str, number: int | None) -> str:
    if task == "check":
        if number is None:
            raise ValueError("the check task needs a step number")
        return f"s{number:02d}"
    if task not in TASKS:
        raise ValueError(f"{task!r} is not a task of the Makefile and pixi.toml ({', '.join(TASKS)})")
    return task


# --------------------------------------------------------------------------- pins

def pins(path: Path | None = None) -> dict[str, str]:
    """name -> version, from requirements.txt (the course's one list of pins)."""
    out = {}
    try:
        text = (path or REQUIREMENTS).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out
