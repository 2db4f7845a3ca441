"""What each check gets: a workspace written from the course as read at the start, and what the
grader prepares outside any sandbox (MAX's first-import compile, the seeded checkpoints)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from gpt2course.course import ROOT
from gpt2course.max_install import child_env

def course_files(root: Path = ROOT) -> dict[str, bytes]:
    """The checking code, tests and solutions, in memory: workspaces are written from this copy."""
    files: dict[str, bytes] = {}
    for p in sorted((root / "gpt2course").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            files[str(p.relative_to(root))] = p.read_bytes()
    for pattern in ("tests/conftest.py", "tests/test_step_*.py", "solutions/__init__.py",
                    "solutions/solution_*.py", "steps/__init__.py"):
        for p in sorted(root.glob(pattern)):
            files[str(p.relative_to(root))] = p.read_bytes()
    return files


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def write_workspace(ws: Path, course: dict[str, bytes], step: int, student_file: bytes) -> None:
    for rel, data in course.items():
        m = re.match(r"solutions/solution_(\d+)\.py$", rel)
        if m and int(m.group(1)) >= step:
            continue  # the graded step's solution and later ones stay hidden
        dest = ws / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (ws / "steps").mkdir(exist_ok=True)
    (ws / "steps" / "__init__.py").touch()
    (ws / "solutions").mkdir(exist_ok=True)
    (ws / "solutions" / "__init__.py").touch()
    (ws / "steps" / f"step_{step:02d}.py").write_bytes(student_file)
    (ws / "tmp").mkdir()


def needed_checkpoints(course: dict[str, bytes], steps: list[int]) -> list[str]:
    from gpt2course.hf import checkpoints

    names = {"small"}
    for n in steps:
        text = course.get(f"tests/test_step_{n:02d}.py", b"").decode("utf-8", "replace")
        names.update(name for name in checkpoints.CONFIGS if f'"{name}"' in text)
    return sorted(names)


def prepare_checkpoints(names: list[str]) -> None:
    """Builds the seeded checkpoints the checks read, once, here: the checks may not write them."""
    from gpt2course.hf import checkpoints

    missing = [n for n in names
               if not (checkpoints.cache_dir() / "checkpoints" / f"seeded-{n}-{checkpoints.SEED}"
                       / "model.safetensors").exists()]
    if not missing:
        return
    print(f"building the seeded checkpoint(s) the checks read: {', '.join(missing)} (once) ...",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-c", "import sys\nfrom gpt2course.hf import checkpoints\n"
                    "for n in sys.argv[1:]:\n    checkpoints.seeded_checkpoint(n)\n", *missing],
                   cwd=ROOT, check=True,
                   env=child_env(PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")))


def modular_cache() -> Path:
    """MAX's kernel cache, shared by every check (HOME is left alone so it is found), made if
    missing. Each check sees it read-only under a layer of its own (gpt2course.grade.isolation);
    only the grader writes it (``warm_cache``). execute.max_cache_dir owns where it is,
    MODULAR_CACHE_DIR included, so grader, judges and workers agree."""
    from gpt2course.check.execute import max_cache_dir

    path = max_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path




WARMED = ".gpt2course-warmed.json"  # in MAX's cache: the steps warmed, per course version


def warm_cache(steps: list[int], device: str | None, version: str, jobs: int) -> None:
    """Compiles, outside any sandbox, what the reference solutions of ``steps`` need into MAX's
    shared cache, once per course version: the checks read it, and what a check compiles itself
    is discarded with it, so without this every check of a compiled step would compile from
    nothing. A reference that fails to check is said, and grading goes on."""
    import json

    from gpt2course.check.command import timed_say, warm

    stamp = modular_cache() / WARMED
    try:
        done = json.loads(stamp.read_text())
    except (OSError, ValueError):
        done = {}
    key = f"{version}:{device or 'cpu'}"
    warmed = set(done.get(key, [])) if isinstance(done, dict) else set()
    todo = [n for n in steps if n not in warmed]
    if not todo:
        return
    print(f"warming MAX's cache with the reference solutions of steps {', '.join(f'{n:02d}' for n in todo)} "
          "(once per course version; checks may read the cache, not write it) ...", file=sys.stderr, flush=True)
    failed = dict(warm(todo, device, jobs, timed_say(sys.stderr)))
    for n, result in failed.items():
        print(f"  step {n:02d}: its reference FAILED: "
              f"{str((result.get('first_failure') or {}).get('message'))[:300]}", file=sys.stderr, flush=True)
    warmed.update(n for n in todo if n not in failed)
    stamp.write_text(json.dumps({key: sorted(warmed)}))


def clean_cache() -> list[str]:
    """Warnings for what in MAX's shared cache is not a plain file, folder or link within it (a
    named pipe in place of a lock file would make every later MAX call wait forever), each
    removed."""
    found = []
    root = modular_cache()
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode) and os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
                continue  # a link within the cache: MAX's own
            kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "a named pipe" if stat.S_ISFIFO(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device file")
            try:
                os.unlink(path)
                found.append(f"MAX's cache held {kind}, removed: {path}")
            except OSError as exc:
                found.append(f"MAX's cache holds {kind} that could not be removed ({exc.strerror}): {path}")
    return found
