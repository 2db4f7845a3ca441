"""The one verdict cache: a step's last verdict, keyed on everything that decides it.

The key hashes the step file, the solutions it can import (every earlier one, plus any it
names), the step's check and the course's checking code, the target and device, and the
versions of the packages that compute the numbers: change any of them and the step is
checked again. ``progress``, ``watch``, ``check`` and the ``gpt2 --model steps`` gate all
read and write it (``.progress/results.json``). Standard library only.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from pathlib import Path

from gpt2course import course
from gpt2course.state import load_json, save_json

RESULTS_FILE = "results.json"
# The parts of the package that do not decide a verdict (the learner's loop, grading, the run
# path, serving): editing them does not make every step be checked again.
NOT_DECIDING = ("learn", "grade", "run", "serve")


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"<missing>"


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("max", "torch", "transformers", "numpy"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=-")
    return ",".join(out)


def deciding_files(root: Path | None = None) -> list[Path]:
    """The course's checking code: every module of the package that can change a verdict."""
    package = (root or course.ROOT) / "gpt2course"
    return sorted(p for p in package.rglob("*.py")
                  if "__pycache__" not in p.parts and p.relative_to(package).parts[0] not in NOT_DECIDING)


def cache_key(step: int, target: str = course.DEFAULT_TARGET, device: str | None = None,
              weights: str | None = None) -> str:
    """A hash of everything a step's verdict depends on."""
    h = hashlib.sha256()
    path = course.step_file(step, target)
    parts: list[tuple[str, bytes]] = [
        ("meta", f"{step}|{target}|{path.resolve()}|{device or course.DEFAULT_DEVICE}|{weights or 'seeded'}".encode())]
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        text = ""
    named = {int(n) for n in re.findall(r"solutions\.solution_(\d+)", text)}
    for n in sorted(set(range(1, step)) | named):
        parts.append((f"solution {n}", _bytes(course.solution_file(n))))
    parts.append(("step", _bytes(path)))
    parts.append(("test", _bytes(course.test_file(step))))
    parts.append(("conftest", _bytes(course.ROOT / "tests" / "conftest.py")))
    for lib in deciding_files():
        parts.append((str(lib.relative_to(course.ROOT)), _bytes(lib)))
    parts.append(("versions", _versions().encode()))
    for name, data in parts:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _entry_name(step: int, target: str) -> str:
    return f"{step:02d}" if target == course.DEFAULT_TARGET else f"{step:02d}@{target}"


def remember(step: int, key: str, result: dict, target: str = course.DEFAULT_TARGET) -> None:
    """Keeps a verdict; a check that could not run says nothing about the code and is not kept."""
    if result.get("status") not in ("passed", "failed"):
        return
    path = course.PROGRESS_DIR / RESULTS_FILE
    data = load_json(path)
    data[_entry_name(step, target)] = {
        "key": key, "result": {k: v for k, v in result.items() if k != "cached"},
        "checked_at": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        save_json(path, data)
    except OSError:
        pass  # a read-only course folder: the verdict is still printed, only not remembered


def recall(step: int, key: str, target: str = course.DEFAULT_TARGET) -> dict | None:
    entry = load_json(course.PROGRESS_DIR / RESULTS_FILE).get(_entry_name(step, target))
    if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("result"), dict):
        return dict(entry["result"], cached=True)
    return None
