"""What MAX does on its first import: done once, outside any sandbox; and what it leaks.

Some of MAX's Python modules compile Mojo source on their first import and keep the result
inside the installed package. ``make install`` and the grader run ``prepare_max`` so that no
check (and no student) is blamed for a write MAX itself makes.

Once a process has run MAX, its C environment (not ``os.environ``) carries
``PYTHONEXECUTABLE`` set to the base interpreter (MAX 26.7 sets it for its Python interop), so a
child ``python`` that inherits it runs outside the virtual environment and finds no ``max``.
``child_env`` is the environment every Python the course starts gets, passed explicitly: the
process's own (``os.environ``), without what MAX leaked.

    python -m gpt2course.max_install      (what `make install` runs)
"""

from __future__ import annotations

import os
import subprocess
import sys

from gpt2course.course import ROOT

# Python modules of MAX that compile Mojo source on their first import and keep the result
# inside the installed package (site-packages/max/_kv_cache_ops/__mojocache__/*.so). A check
# may not write there (nor may the student code it runs), so on a fresh install the grader
# imports them once itself, before any check starts. Found with
# `grep -rl mojo.importer site-packages/max`.
MAX_SELF_COMPILING = ("max._kv_cache_ops",)


def prepare_max() -> None:
    """Lets MAX finish its first-import work (compiling modules into its own package) here,
    outside the sandbox, so that no check is blamed for a write MAX itself makes."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    result = subprocess.run([sys.executable, "-c", code, *MAX_SELF_COMPILING], cwd=ROOT,
                            capture_output=True, text=True, env=child_env())
    if result.returncode != 0:  # not fatal: the checks then say what failed
        print(f"warning: importing {', '.join(MAX_SELF_COMPILING)} failed:\n{result.stderr[-2000:]}",
              file=sys.stderr, flush=True)


# Set by MAX in the process that uses it; inherited, they send a child outside the venv.
MAX_LEAKED = ("PYTHONEXECUTABLE",)

# How a check's worker runs MAX's eager ops. MAX's default executor ("composite") serves each
# eager graph with its interpreter *and* compiles the same graph in a pool of background
# processes, one per core, for later calls. A check runs each eager graph once, in a process
# that then exits, so on a 2-core machine those compiles only take the cores from the
# interpreter and from the graph compiles that are used (bench/README.md, "bench_suite").
# MAX's own name for interpret-first, compile-only-what-the-interpreter-refuses, in process;
# the grader needs it anyway (no process pool may start inside a confined worker).
EAGER_EXECUTOR = "fallback-internal"


def worker_env(**extra: str) -> dict[str, str]:
    """``child_env`` for a process that runs a learner's step: MAX's eager executor set to
    ``EAGER_EXECUTOR`` unless the caller's environment names one (MAX_EAGER_EXECUTOR)."""
    env = child_env(**extra)
    env.setdefault("MAX_EAGER_EXECUTOR", EAGER_EXECUTOR)
    return env


def python_library() -> str | None:
    """This interpreter's shared library (libpython3.X.so), if it has one."""
    import sysconfig

    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    path = os.path.join(libdir, name) if libdir and name else None
    return os.path.realpath(path) if path and name.endswith(".so") and os.path.exists(path) else None


def child_env(base: dict | None = None, **extra: str) -> dict[str, str]:
    """A copy of ``base`` (default: this process's environment) for a child Python, without the
    variables MAX leaked, plus ``extra``. Mojo's Python interop is told this interpreter's
    library (``MOJO_PYTHON_LIBRARY``): otherwise it runs whatever ``python3`` is first on PATH
    to find one, which a sandboxed check may not run (a pyenv shim is a shell script)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in MAX_LEAKED}
    library = python_library()
    if library and "MOJO_PYTHON_LIBRARY" not in env:
        env["MOJO_PYTHON_LIBRARY"] = library
    env.update(extra)
    return env


if __name__ == "__main__":
    prepare_max()
