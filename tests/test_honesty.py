"""Every check can fail: it fails on the untouched skeleton (with the friendly "start at TODO 1"
message) and on each plausible mistake of tests/mutants.py, naming the mistake where it can.
(That every check passes on its solution is `pytest tests --target=solutions` itself.)

Each case runs the real learner command, `python -m gpt2course check NN --target DIR`, in a
subprocess, with DIR holding the skeleton or the mutated solution as step_NN.py.
"""

import json
import os
import subprocess
import sys

import pytest

from gpt2course import ROOT, manifest, skeleton
from mutants import MUTANTS

STEPS = [n for n in manifest.numbers() if skeleton.solution_path(n).exists()]


def run_check(step: int, source: str, tmp_path, *, fail_fast: bool) -> tuple[int, dict, str]:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / f"step_{step:02d}.py").write_text(source)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "gpt2course", "check", str(step), "--target", str(folder),
           "--report-json", str(report)] + (["--fail-fast"] if fail_fast else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert report.exists(), f"no report written\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(report.read_text())["steps"][f"{step:02d}"], proc.stdout


@pytest.mark.parametrize("step", STEPS, ids=lambda n: f"s{n:02d}")
def test_untouched_skeleton_fails_with_start_message(step, tmp_path):
    code, result, out = run_check(step, skeleton.pristine_skeleton(step), tmp_path, fail_fast=True)
    assert code != 0 and result["status"] == "failed"
    assert result["first_failure"]["message"].startswith(
        f"step {step:02d} not implemented yet: start at TODO 1"), result["first_failure"]
    assert "Traceback" not in out


CASES = [(step, m) for step in STEPS for m in MUTANTS.get(step, [])]


def test_every_step_has_two_mutants():
    for step in STEPS:
        assert len(MUTANTS.get(step, [])) >= 2, f"step {step:02d} needs at least two plausible mistakes"


@pytest.mark.parametrize("step,mutant", CASES, ids=[f"s{s:02d}-{m[0]}" for s, m in CASES])
def test_check_fails_on_mistake(step, mutant, tmp_path):
    name, old, new, says = mutant
    source = skeleton.solution_path(step).read_text()
    assert source.count(old) >= 1, f"mutant {name!r}: {old!r} no longer appears in the solution"
    code, result, out = run_check(step, source.replace(old, new), tmp_path, fail_fast=True)
    assert code != 0 and result["status"] == "failed", f"the check passed a mistake: {name}\n{out[-3000:]}"
    failure = result["first_failure"]
    text = failure["message"] + "\n" + (failure.get("hint") or "")
    assert says in text, f"mutant {name!r}: expected the failure to say {says!r}; it said:\n{text}"
