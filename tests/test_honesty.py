"""Every check can fail, and does not fail what is right: it fails on the untouched skeleton (with
the friendly "start at TODO 1" message) and on each plausible mistake of tests/mutants.py, naming
the mistake where it can, and it passes each correct answer written differently in
tests/alternatives.py. (That every check passes on its solution is `pytest tests
--target=solutions` itself.)

Each case runs the real learner command, `python -m gpt2course check NN --target DIR`, in a
subprocess, with DIR holding the skeleton, the mutated solution or the alternative as step_NN.py. The cases run
two at a time (most of a cached case is Python start-up, which uses one core).
"""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

from gpt2course import course, skeleton
from gpt2course.course import ROOT
from alternatives import ALTERNATIVES
from mutants import MUTANTS

STEPS = [n for n in course.numbers() if course.solution_file(n).exists()]
# A case is (step, edit): edit None is the untouched skeleton; a 4-tuple (name, old, new, says)
# a mistake; a 3-tuple (name, old, new) a correct alternative.
SKELETONS = [(step, None) for step in STEPS]
MISTAKES = [(step, m) for step in STEPS for m in MUTANTS.get(step, [])]
CORRECT = [(step, a) for step in STEPS for a in ALTERNATIVES.get(step, [])]


def case_id(case) -> str:
    step, edit = case
    if edit is None:
        return f"s{step:02d}-skeleton"
    return f"s{step:02d}-" + ("alternative: " if len(edit) == 3 else "") + edit[0]


def source_for(case) -> str:
    step, edit = case
    if edit is None:
        return skeleton.pristine_skeleton(step)
    name, old, new = edit[:3]
    source = course.solution_file(step).read_text()
    if len(edit) == 3:  # an alternative replaces exactly one place, so it is the answer it claims
        assert source.count(old) == 1, (f"alternative {name!r}: {old!r} appears {source.count(old)} "
                                        "times in the solution; it must appear once")
    assert source.count(old) >= 1, f"{name!r}: {old!r} no longer appears in the solution"
    return source.replace(old, new)


def run_case(case, folder) -> tuple[int, dict | None, str]:
    step, _ = case
    folder.mkdir(parents=True)
    (folder / f"step_{step:02d}.py").write_text(source_for(case))
    report = folder / "report.json"
    cmd = [sys.executable, "-m", "gpt2course", "check", str(step), "--target", str(folder),
           "--report-json", str(report), "--fail-fast"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    result = json.loads(report.read_text())["steps"][f"{step:02d}"] if report.exists() else None
    return proc.returncode, result, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("honesty")
    # Only the cases selected for this run (so `-k s07` runs step 7's cases alone).
    chosen = {case_id(item.callspec.params["case"]) for item in request.session.items
              if getattr(item, "callspec", None) is not None and "case" in item.callspec.params
              and item.module.__name__ == request.module.__name__}
    cases = [c for c in SKELETONS + MISTAKES + CORRECT if case_id(c) in chosen]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case_id(c): pool.submit(run_case, c, base / f"case{i}") for i, c in enumerate(cases)}
        return {key: f.result() for key, f in futures.items()}


@pytest.mark.parametrize("case", SKELETONS, ids=case_id)
def test_untouched_skeleton_fails_with_start_message(case, outcomes):
    step, _ = case
    code, result, out = outcomes[case_id(case)]
    assert result is not None, f"no report written\n{out[-3000:]}"
    assert code != 0 and result["status"] == "failed"
    assert result["first_failure"]["message"].startswith(
        f"step {step:02d} not implemented yet: start at TODO 1"), result["first_failure"]
    assert "Traceback" not in out


def test_alternatives_apply_once():
    """Cheap (no MAX): each alternative's text occurs exactly once in its solution."""
    for case in CORRECT:
        source_for(case)


def test_every_step_has_two_mutants():
    for step in STEPS:
        assert len(MUTANTS.get(step, [])) >= 2, f"step {step:02d} needs at least two plausible mistakes"


@pytest.mark.parametrize("case", MISTAKES, ids=case_id)
def test_check_fails_on_mistake(case, outcomes):
    step, (name, _, _, says) = case
    code, result, out = outcomes[case_id(case)]
    assert result is not None, f"no report written\n{out[-3000:]}"
    assert code != 0 and result["status"] == "failed", f"the check passed a mistake: {name}\n{out[-3000:]}"
    failure = result["first_failure"]
    text = failure["message"] + "\n" + (failure.get("hint") or "")
    assert says in text, f"mutant {name!r}: expected the failure to say {says!r}; it said:\n{text}"


@pytest.mark.parametrize("case", CORRECT, ids=case_id)
def test_check_passes_alternative(case, outcomes):
    step, (name, _, _) = case
    code, result, out = outcomes[case_id(case)]
    assert result is not None, f"no report written\n{out[-3000:]}"
    failure = result.get("first_failure") or {}
    assert code == 0 and result["status"] == "passed", (
        f"the check failed a correct alternative: {name}\n{failure.get('message')}\n"
        f"{failure.get('hint')}\n{out[-3000:]}")
