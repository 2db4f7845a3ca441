"""The tree keeps its architecture: what each part may import, and how values travel.

Each test runs a fresh interpreter, so what one import pulls in is seen on its own."""

import re
import subprocess
import sys

import pytest

from gpt2course.course import ROOT

STDLIB_ONLY = ["gpt2course.course", "gpt2course.skeleton", "gpt2course.state", "gpt2course.errors",
               "gpt2course.check.command", "gpt2course.check.verdicts", "gpt2course.learn.progress",
               "gpt2course.learn.hint", "gpt2course.learn.reset", "gpt2course.learn.watch",
               "gpt2course.learn.doctor", "gpt2course.cli"]


def imported_after(code: str, *, flags: tuple[str, ...] = ()) -> set[str]:
    """The modules loaded after running ``code`` in a new interpreter."""
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, *flags, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(proc.stdout.split())


@pytest.mark.parametrize("module", STDLIB_ONLY)
def test_the_learners_loop_needs_only_the_standard_library(module):
    """doctor, progress, hint, reset and watch run before anything is installed (-S: no site-packages)."""
    imported_after(f"import {module}", flags=("-S",))


def test_running_the_model_does_not_import_pytest_or_the_grader():
    mods = imported_after("import gpt2course.run.command, gpt2course.run.engine, gpt2course.run.generate")
    assert "pytest" not in mods and "_pytest" not in mods
    assert not any(m.startswith("gpt2course.grade") for m in mods)


def test_installing_does_not_import_the_grader():
    mods = imported_after("import gpt2course.max_install")
    assert not any(m.startswith("gpt2course.grade") for m in mods)


def test_the_learners_plugin_carries_no_grading_machinery():
    mods = imported_after("import gpt2course.check.plugin")
    assert not any(m.startswith("gpt2course.grade") for m in mods)


def test_no_module_reads_the_target_or_the_device_from_the_environment():
    """The target and the device are parameters from the command line down to MAX."""
    offenders = []
    for path in sorted((ROOT / "gpt2course").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"GPT2_(TARGET|DEVICE|GRADE)", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
