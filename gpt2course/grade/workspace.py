"""What each check gets: a workspace written from the course as read at the start, and what the
grader prepares outside any sandbox (MAX's first-import compile, the seeded checkpoints)."""

from __future__ import annotations

import hashlib
import os
import re
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
    missing: the judges may write it and so may their workers (execute.max_cache_dir owns
    where it is, MODULAR_CACHE_DIR included, so both agree)."""
    from gpt2course.check.execute import max_cache_dir

    path = max_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


