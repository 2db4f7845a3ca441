"""Every check can fail, and does not fail what is right: it fails on the untouched skeleton (with
the friendly "start at TODO 1" message) and on each plausible mistake of tests/mutants.py, naming
the mistake where it can, and it passes each correct answer written differently in
tests/alternatives.py. (That every check passes on its solution is `pytest tests
--target=solutions` itself.)

Each case runs the real learner command, `python -m gpt2course check NN --target DIR`, in a
subprocess, with DIR holding the skeleton, the mutated solution or the alternative as step_NN.py.

On a new machine most of the cost is MAX compiling kernels the first time, so the cases come
after `python -m gpt2course warm` of the steps they cover (two lanes; the compiled steps one
after another, so each reuses the kernels of the one before): a mutant then compiles only its
own graph from cached kernels. The cases run two at a time, the compiled steps' first, so the
cheap ones fill in at the end.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

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
    t0, files = time.monotonic(), _cache_files()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    result = json.loads(report.read_text())["steps"][f"{step:02d}"] if report.exists() else None
    _log_case(case, time.monotonic() - t0, _cache_files() - files, proc.stdout + proc.stderr)
    return proc.returncode, result, proc.stdout + proc.stderr


def _cache_files() -> int:
    from gpt2course.check.execute import max_cache_dir

    return sum(len(files) for _, _, files in os.walk(max_cache_dir()))


def _log_case(case, seconds: float, new_files: int, out: str) -> None:
    """One line per case for bench/bench_suite.py (GPT2COURSE_SUITE_LOG): its seconds, how many
    files MAX's cache gained while it ran (with two cases at a time, the other's count too) and
    the compiles the check announced."""
    path = os.environ.get("GPT2COURSE_SUITE_LOG")
    if not path:
        return
    compiles = [float(s) for s in re.findall(r"compiled in ([\d.]+)s", out)]
    with open(path, "a") as f:
        f.write(json.dumps({"case": case_id(case), "seconds": round(seconds, 1), "cache_files_gained": new_files,
                            "compiled_s": compiles, "end": time.time()}) + "\n")


def _cost_order(case):
    """Compiled steps' mutants and alternatives first (each compiles a graph of its own), then
    eager ones, then the rest (skeletons and NumPy steps: seconds), so two slow cases run side
    by side early and the quick ones fill the end."""
    step, edit = case
    kind = course.step(step).get("max")
    if edit is None:
        return (3, step)
    return (0 if kind == "compiled" and step != 12 else 1 if kind in ("compiled", "eager") else 2, -step)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("honesty")
    # Only the cases selected for this run (so `-k s07` runs step 7's cases alone).
    chosen = {case_id(item.callspec.params["case"]) for item in request.session.items
              if getattr(item, "callspec", None) is not None and "case" in item.callspec.params
              and item.module.__name__ == request.module.__name__}
    cases = [c for c in SKELETONS + MISTAKES + CORRECT if case_id(c) in chosen]
    steps = sorted({step for step, _ in cases})
    if steps:
        warm = subprocess.run([sys.executable, "-m", "gpt2course", "warm", "--jobs", "2",
                               "--steps", ",".join(f"{n:02d}" for n in steps)],
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                              text=True, timeout=3600)
        assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
    cases.sort(key=_cost_order)
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
