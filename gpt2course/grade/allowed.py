"""What a graded check's worker may read and write: the allow-lists its Landlock rules are made of.

Reads: the Python runtime, system libraries and a few /etc and /dev files, NumPy, MAX and what
MAX requires (from their installed metadata), the step's file and the earlier solutions. Not
torch, transformers, pytest, the checking code, the graded step's solution, other students'
folders or other workspaces. Writes: its scratch folder, MAX's cache, /dev/null and /dev/full,
the GPU's device nodes.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Iterable

# --- What a worker may read ------------------------------------------------------------------

# Distributions a worker may never read, even if MAX (without extras) required them: the
# checking libraries and the ones that hold a reference GPT-2. (MAX 26.7's own requirements pull
# in none of them: max-core, mojo-compiler, their libs, click, exceptiongroup, msgspec, numpy,
# psutil, rich (markdown-it-py, mdurl, pygments), taskgroup, typing-extensions.)
WORKER_FORBIDDEN = ("torch", "transformers", "huggingface-hub", "safetensors", "tokenizers",
                    "pytest", "pluggy")

# Folders of shared libraries, read-only: their entries, but python3*/ (a system Python's
# packages, torch among them maybe, live there).
_SYSTEM_LIBS = ("/usr/lib", "/lib", "/lib64", "/usr/lib64")
# System files MAX and Python read; not all of /etc (it holds /etc/shadow, and a worker may run
# as root).
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/timezone", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts",
        "/etc/host.conf", "/etc/gai.conf", "/etc/os-release", "/etc/lsb-release",
        "/etc/mime.types", "/etc/OpenCL", "/etc/vulkan", "/etc/nvidia")
# Device files a worker reads; not all of /dev (root could read a disk raw).
_DEV_READ = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_DEV_WRITE = ("/dev/null", "/dev/full")
# GPU device nodes (NVIDIA, AMD), opened read-write by the drivers' user-space libraries.
_GPU_NODES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requires: list[str] | None) -> list[str]:
    """The distributions ``requires`` names when no extra is asked for (markers evaluated with
    ``extra`` unset; without ``packaging``, a requirement whose marker names an extra is
    dropped and the other markers are taken as true)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        Requirement = None
    names = []
    for line in requires or []:
        if Requirement is not None:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                names.append(req.name)
        else:
            spec, _, marker = line.partition(";")
            if "extra" not in marker:
                names.append(re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1))
    return names


def worker_distributions(root: str = "max", *, also=("numpy",)) -> list[str]:
    """The installed distributions a worker may read: ``root`` and what it requires without
    extras, transitively, plus ``also``; never those in ``WORKER_FORBIDDEN``. Canonical names."""
    import importlib.metadata as md

    forbidden = {_canonical(n) for n in WORKER_FORBIDDEN}
    todo, seen = [_canonical(root), *(_canonical(a) for a in also)], set()
    while todo:
        name = todo.pop()
        if name in seen or name in forbidden:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        todo.extend(_canonical(n) for n in _requirement_names(dist.requires))
    return sorted(seen)


def _distribution_paths(allowed: Iterable[str]) -> list[str]:
    """The top-level site-packages paths of the ``allowed`` distributions (each package folder,
    module file, its .dist-info). A top-level folder that another, not allowed, distribution
    also has files in (a namespace package, site-packages' __pycache__) is not given whole:
    the allowed one's paths one level down are, and so on."""
    import importlib.metadata as md

    allowed = set(allowed)
    own, others = [], set()
    for dist in md.distributions():
        files = [os.path.normpath(dist.locate_file(f)) for f in dist.files or ()
                 if f.parts and f.parts[0] != ".."]  # '..': scripts and data outside site-packages
        if _canonical(dist.metadata["Name"] or "") in allowed:
            own.append((os.path.normpath(dist.locate_file("")), files))
        else:
            others.update(_prefixes(files))
    paths = set()
    for site, files in own:
        for f in files:
            # the shortest path from site-packages down to f that holds no other distribution's file
            parts = os.path.relpath(f, site).split(os.sep)
            for i in range(1, len(parts) + 1):
                candidate = os.path.join(site, *parts[:i])
                if candidate not in others:
                    paths.add(candidate)
                    break
    return sorted(paths)


def _prefixes(files: Iterable[str]) -> set[str]:
    """Every file and folder on the way to each of ``files`` (the file itself included)."""
    out = set()
    for f in files:
        while f not in out and f not in ("/", ""):
            out.add(f)
            f = os.path.dirname(f)
    return out


def _python_runtime() -> list[str]:
    """The interpreter, its shared library, the standard library (without its site-packages)
    and the venv's pyvenv.cfg."""
    import sysconfig

    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    paths = {os.path.realpath(sys.executable), os.path.join(sys.prefix, "pyvenv.cfg")}
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library:
        paths.add(os.path.realpath(os.path.join(libdir, library)))
    for key in ("stdlib", "platstdlib"):
        paths.update(_entries_except(sysconfig.get_path(key, vars=base), ("site-packages", "dist-packages")))
    return sorted(paths)


def _entries_except(folder: str, skip) -> list[str]:
    """The entries of ``folder`` but those named in ``skip`` (so that a folder's site-packages,
    where torch may be installed, is not given with it)."""
    folder = os.path.realpath(folder)
    try:
        return [os.path.join(folder, e) for e in os.listdir(folder) if e not in skip]
    except OSError:
        return []


def _system_paths() -> list[str]:
    """Shared libraries (not the system Pythons' package folders beneath them), the few /etc
    files the loader and libc read, /proc, /sys, and the harmless device files."""
    paths = set()
    for folder in _SYSTEM_LIBS:
        paths.update(p for p in _entries_except(folder, ()) if not re.match(r"python\d", os.path.basename(p)))
    paths.update(p for p in (*_ETC, "/proc", "/sys", *_DEV_READ) if os.path.exists(p))
    return sorted(paths)


def _step_files(workspace: str, step: int) -> list[str]:
    """The graded step's file and the solutions before it, with both packages' __init__.py."""
    ws = os.path.realpath(workspace)
    return [os.path.join(ws, "steps", "__init__.py"), os.path.join(ws, "steps", f"step_{step:02d}.py"),
            os.path.join(ws, "solutions", "__init__.py"),
            *(os.path.join(ws, "solutions", f"solution_{n:02d}.py") for n in range(1, step))]


def worker_reads(workspace, step: int, *, extra=()) -> list[str]:
    """The read allow-list (for ``confine``) of a worker checking step ``step`` in ``workspace``
    (a copy of the course: steps/, solutions/, gpt2course/, tests/): the Python runtime; shared
    libraries, /proc, /sys and a few /etc and /dev files; NumPy, MAX and what MAX requires
    (``worker_distributions``); the step's file and the solutions before it; and ``extra``.

    Not in it, nor beneath anything in it: torch, transformers, huggingface_hub, safetensors,
    tokenizers, pytest, pluggy; the workspace's gpt2course/ and tests/; other workspaces; the
    step's own solution and later ones. MAX's cache must be writable: it is in ``worker_writes``,
    not here. The import system must list steps/ and solutions/: ``worker_listable``.

    Python's import caches, filled before ``confine``, still list what may no longer be read:
    importing such a module afterwards raises PermissionError, not ModuleNotFoundError (so
    ``try: import attr / except ImportError`` fails); the worker's import refuser turns the
    forbidden names into ModuleNotFoundError first. A new Python cannot start under these rules
    (the standard library's folder is not listable), so no child interpreter either."""
    paths = [*_python_runtime(), *_system_paths(), *_distribution_paths(worker_distributions()),
             *_step_files(workspace, step), *(os.fspath(p) for p in extra)]
    return list(dict.fromkeys(paths))


def worker_listable(workspace) -> list[str]:
    """Folders a worker may list but not read (``confine``'s ``listable``): the import system
    lists steps/ and solutions/ to find a step's modules. The workspace itself is not listable:
    import the ``steps`` and ``solutions`` packages before ``confine``, their modules after."""
    ws = os.path.realpath(workspace)
    return [os.path.join(ws, "steps"), os.path.join(ws, "solutions")]


def worker_writes(scratch=()) -> list[str]:
    """The read-write list (for ``confine``) of a worker: ``scratch``; MAX's cache (MAX writes
    compiled kernels there, and reads them back, lazily); /dev/null and /dev/full; the GPU
    device nodes (the drivers open them read-write)."""
    from gpt2course.check.execute import max_cache_dir

    gpus = sorted(p for pattern in _GPU_NODES for p in glob.glob(pattern))
    paths = [*(os.fspath(s) for s in scratch), os.fspath(max_cache_dir()), *_DEV_WRITE, *gpus]
    return list(dict.fromkeys(paths))


def worker_spec(workspace, step: int, scratch=(), *, extra=()) -> dict[str, list[str]]:
    """``confine``'s arguments for a worker, JSON-ready: ``{"read", "write", "listable"}``."""
    return {"read": worker_reads(workspace, step, extra=extra), "write": worker_writes(scratch),
            "listable": worker_listable(workspace)}


def judge_reads(workspace, *, extra=()) -> list[str]:
    """The read allow-list of a whole graded check (its judge, and so, as an outer bound, its
    worker): the Python runtime, every installed package (the judge runs torch, transformers
    and pytest), shared libraries and the few system files, the check's workspace (the course's
    copy, the student's file, the judge's .judge/), the seeded checkpoints the grader built, and
    ``extra``. Not: the repository, the class's folders, other workspaces, the rest of /etc."""
    import site
    import sysconfig

    from gpt2course.hf import checkpoints

    packages = {sysconfig.get_path(k) for k in ("purelib", "platlib")} | set(site.getsitepackages())
    installs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}  # a new Python starts
    paths = [*_python_runtime(), *sorted(os.path.realpath(p) for p in installs | packages if p and os.path.isdir(p)),
             *_system_paths(), os.path.realpath(workspace), os.fspath(checkpoints.cache_dir()),
             *(os.fspath(p) for p in extra)]
    return list(dict.fromkeys(paths))
