"""Reading a class: one folder or .zip per student, each step file read into memory once."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import zipfile
from pathlib import Path, PurePosixPath

from gpt2course.text import clean_text

MAX_STEP_FILE = 1 << 20      # a step file larger than this is refused
SKIP_DIRS = {".git", "__MACOSX", "__pycache__", ".venv", "venv", "node_modules", "solutions", ".github"}
STEP_RE = re.compile(r"^step_(\d{2})\.py$")

@dataclasses.dataclass
class Submission:
    name: str
    source: str                               # the folder or .zip it came from
    files: dict[int, bytes] = dataclasses.field(default_factory=dict)      # step -> its bytes
    refused: dict[int, str] = dataclasses.field(default_factory=dict)      # step -> why not run
    problem: str | None = None                # the whole submission could not be read
    digests: dict[str, str] = dataclasses.field(default_factory=dict)      # path -> sha256, to re-check


def _choose(candidates: dict[int, list[tuple[tuple, str]]]) -> dict[int, str]:
    """The file per step: the one nearest the submission's top, ``steps/step_NN.py`` before a
    ``step_NN.py`` beside it (so a GitHub archive's ``repo-main/steps/`` is found too)."""
    return {n: sorted(c)[0][1] for n, c in candidates.items()}


def _rank(parts: tuple[str, ...]) -> tuple:
    if len(parts) > 1 and parts[-2] == "steps":
        return (len(parts) - 2, 0)
    return (len(parts) - 1, 1)


def read_folder(path: Path, name: str) -> Submission:
    sub = Submission(name, str(path))
    candidates: dict[int, list] = {}
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        rel = Path(dirpath).relative_to(path)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and depth < 3)
        for fn in filenames:
            m = STEP_RE.match(fn)
            if m:
                parts = rel.parts + (fn,)
                candidates.setdefault(int(m.group(1)), []).append((_rank(parts), str(Path(dirpath) / fn)))
    for step, file in _choose(candidates).items():
        p = Path(file)
        if p.is_symlink():
            sub.refused[step] = f"{p.relative_to(path)} is a symbolic link; submit the file itself"
            continue
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_STEP_FILE + 1)
        except OSError as exc:
            sub.refused[step] = f"cannot read {p.relative_to(path)}: {exc.strerror}"
            continue
        if len(data) > MAX_STEP_FILE:
            sub.refused[step] = f"{p.relative_to(path)} is larger than {MAX_STEP_FILE >> 20} MiB"
            continue
        sub.files[step] = data
        sub.digests[str(p)] = hashlib.sha256(data).hexdigest()
    return sub


def read_zip(path: Path, name: str) -> Submission:
    sub = Submission(name, str(path))
    try:
        with zipfile.ZipFile(path) as zf:
            candidates: dict[int, list] = {}
            infos = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if not parts or any(p in SKIP_DIRS or p.startswith(".") or p == ".." for p in parts[:-1]):
                    continue
                m = STEP_RE.match(parts[-1])
                if m and len(parts) <= 4:
                    candidates.setdefault(int(m.group(1)), []).append((_rank(parts), info.filename))
                    infos[info.filename] = info
            for step, member in _choose(candidates).items():
                info = infos[member]
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    sub.refused[step] = f"{member} is a symbolic link; submit the file itself"
                    continue
                if info.file_size > MAX_STEP_FILE:
                    sub.refused[step] = f"{member} is larger than {MAX_STEP_FILE >> 20} MiB"
                    continue
                with zf.open(info) as f:
                    data = f.read(MAX_STEP_FILE + 1)
                if len(data) > MAX_STEP_FILE:
                    sub.refused[step] = f"{member} is larger than {MAX_STEP_FILE >> 20} MiB"
                    continue
                sub.files[step] = data
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError) as exc:
        sub.files.clear()
        sub.problem = f"could not read {path.name}: {exc}"
    try:
        sub.digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        pass
    return sub


def collect(directory: Path) -> tuple[list[Submission], list[str]]:
    """Every student in DIR, read into memory now (later changes on disk change nothing)."""
    subs, ignored, names = [], [], set()
    for entry in sorted(directory.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir():
            name = entry.name
            reader = read_folder
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            name = entry.stem
            reader = read_zip
        else:
            ignored.append(entry.name)
            continue
        name = clean_text(name, 100, newlines=False)  # a folder's name is the student's: printed, stored
        if name in names:
            name = clean_text(entry.name, 100, newlines=False)
        names.add(name)
        subs.append(reader(entry, name))
    return subs, ignored


