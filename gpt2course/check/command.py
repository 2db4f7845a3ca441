"""`check`, `check-all` and `warm`, and ``run_check``: the one way any command checks a step.

A check is pytest on ``tests/test_step_NN.py`` with the learner's plugin
(gpt2course.check.plugin), in its own process, writing a JSON report. ``run_check``
starts it, reads the report and returns the step's verdict; it remembers the verdict in
the one cache (gpt2course.check.verdicts), and with ``use_cache`` answers from it when
nothing that decides the verdict changed. ``check``, ``check-all``, ``progress``,
``watch`` and the ``gpt2 --model steps`` gate all call it. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gpt2course import course
from gpt2course.check import verdicts
from gpt2course.max_install import child_env
from gpt2course.state import load_json

# What a check prints while MAX compiles (so a first, slow compile does not look like a hang).
PROGRESS_PREFIXES = ("compiling ", "compiled in", "nothing to compile")


def check_command(step: int, target: str = course.DEFAULT_TARGET, device: str | None = None,
                  report_json: str | None = None, fail_fast: bool = False,
                  root: Path | None = None, weights: str | None = None) -> list[str]:
    """The pytest command line that checks one step (learners, CI and the grader all use it)."""
    cmd = [sys.executable, "-m", "pytest", str(course.test_file(step, root)),
           "-p", "no:cacheprovider", "--no-header", "-q", "--tb=no", "-rN", f"--target={target}"]
    if device:
        cmd.append(f"--device={device}")
    if report_json:
        cmd.append(f"--report-json={report_json}")
    if weights:
        cmd.append(f"--weights={weights}")
    if fail_fast:
        cmd.append("--exitfirst")
    return cmd


def check_env() -> dict:
    return child_env(PYTHONPATH=str(course.ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _stop(proc: subprocess.Popen) -> None:
    """Stops a check we started (Ctrl-C reaches only us: the check runs in its own session)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _could_not_run(step: int, rc: int | None, tail: list[str]) -> dict:
    lines = [line.strip() for line in tail if line.strip()]
    last = next((line for line in reversed(lines) if re.search(r"\w+Error\b|error:", line)),
                lines[-1] if lines else "")
    return {"status": "error", "passed": 0, "total": 0, "returncode": rc, "first_failure": {
        "check": "running the check",
        "message": f"the check of step {step:02d} did not run (exit status {rc})"
                   + (f": {last}" if last else ""),
        "hint": "run " + course.command("check", step) + " to see the whole output"},
        "output_tail": "\n".join(tail)}


def run_check(step: int, target: str = course.DEFAULT_TARGET, device: str | None = None, *,
              show: bool = True, relay: Callable[[str], None] | None = None,
              use_cache: bool = False, fail_fast: bool = False, weights: str | None = None) -> dict:
    """Checks one step in its own process and returns its verdict:
    ``{"status": passed|failed|error, "passed", "total", "first_failure", "returncode", "cached"}``.

    ``show``: the check's own output goes to this terminal as it comes; otherwise it is read
    quietly and ``relay`` receives MAX's compile-progress lines. ``use_cache``: answer from
    the verdict cache when nothing that decides the verdict changed. ``weights``: check
    against that pretrained checkpoint instead of the seeded ones.
    """
    key = verdicts.cache_key(step, target, device, weights)
    if use_cache:
        cached = verdicts.recall(step, key, target)
        if cached is not None:
            return cached
    with tempfile.TemporaryDirectory(prefix="gpt2-check-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = check_command(step, target, device, str(report), fail_fast, weights=weights)
        tail: list[str] = []
        proc = subprocess.Popen(cmd, cwd=course.ROOT, env=check_env(), start_new_session=True,
                                stdout=None if show else subprocess.PIPE,
                                stderr=None if show else subprocess.STDOUT, text=True)
        try:
            if not show:
                for line in proc.stdout:
                    tail = (tail + [line.rstrip("\n")])[-30:]
                    if relay and line.lstrip().startswith(PROGRESS_PREFIXES):
                        relay(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            _stop(proc)
            raise
        data = load_json(report).get("steps", {}).get(f"{step:02d}")
    if data is None or proc.returncode not in (0, 1):
        return _could_not_run(step, proc.returncode, tail)
    result = {k: data.get(k) for k in ("status", "passed", "total", "first_failure")}
    result.update(returncode=proc.returncode, cached=False)
    if not fail_fast:  # a fail-fast run skips sub-checks: not the step's whole verdict
        verdicts.remember(step, key, result, target)
    return result


def exit_status(result: dict) -> int:
    """A command's exit status for a verdict: 0 passed, 1 failed, else the check's own (or 2)."""
    if result["status"] == "passed":
        return 0
    if result["status"] == "failed":
        return 1
    rc = result.get("returncode")
    return rc if isinstance(rc, int) and rc > 0 else 2


# --------------------------------------------------------------------------- the commands

def header(step: int, target: str, device: str | None, weights: str | None = None) -> str:
    against = f"pretrained {weights}" if weights else "Hugging Face GPT-2"
    return (f"Checking step {step:02d} ({course.step(step)['title']}) against {against} "
            f"[target: {target}, device: {device or course.DEFAULT_DEVICE}"
            + (f", weights: {weights} (pretrained)]" if weights else "]"))


def cmd_check(args) -> int:
    step = course.parse_step(args.step)
    print(header(step, args.target, args.device, args.weights), flush=True)
    result = run_check(step, args.target, args.device, fail_fast=args.fail_fast, weights=args.weights)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps({"steps": {f"{step:02d}": result}}, indent=2))
    if result["status"] == "error":
        print((result.get("first_failure") or {}).get("message", ""), file=sys.stderr)
    return exit_status(result)


def cmd_check_all(args) -> int:
    failed = []
    for step in course.numbers():
        print(f"\n=== step {step:02d}: {course.step(step)['title']} ===", flush=True)
        if run_check(step, args.target, args.device)["status"] != "passed":
            failed.append(step)
    print()
    if failed:
        print(f"{len(failed)} of {len(course.numbers())} steps not passing: "
              + ", ".join(f"s{n:02d}" for n in failed))
        return 1
    print(f"all {len(course.numbers())} steps pass")
    return 0


def warm_lanes(steps: list[int], jobs: int) -> list[list[int]]:
    """How ``warm`` spreads the steps over ``jobs`` processes: the steps that compile graphs
    (course.toml's ``max = "compiled"``) share kernels, so they run one after another in the
    first lane (each then reuses what the one before compiled: two compiling the same kernels
    at once would pay twice); the others fill the other lanes. A lane that runs out takes the
    last compiled step not yet started (see ``_Schedule``)."""
    compiled = [n for n in steps if course.step(n).get("max") == "compiled"]
    rest = [n for n in steps if n not in compiled]
    if jobs <= 1:
        return [list(steps)]
    lanes = [compiled] + [rest[i::jobs - 1] for i in range(jobs - 1)]
    return lanes


class _Schedule:
    """The lanes as queues: a lane takes its own next step, or, once empty, the last step of
    the longest other queue (work taken from the end, far from where that lane is)."""

    def __init__(self, lanes: list[list[int]]):
        import threading

        self.queues = [list(lane) for lane in lanes]
        self.lock = threading.Lock()

    def next(self, lane: int) -> int | None:
        with self.lock:
            if self.queues[lane]:
                return self.queues[lane].pop(0)
            longest = max(self.queues, key=len)
            return longest.pop() if len(longest) > 1 else None


def warm(steps: list[int], device: str | None, jobs: int, say) -> list[tuple[int, dict]]:
    """Checks the reference solutions of ``steps``, ``jobs`` at a time (``warm_lanes``), so MAX's
    caches hold their kernels and graphs; ``say(text)`` gets what is being compiled, n of m.
    Returns the steps whose reference did not pass, with their verdicts."""
    import threading

    jobs = max(1, min(jobs, len(steps)))
    done, failed = [], []
    lock = threading.Lock()
    schedule = _Schedule(warm_lanes(steps, jobs))

    def lane(number: int) -> None:
        while (step := schedule.next(number)) is not None:
            say(f"step {step:02d} {course.step(step)['title']}: checking the reference ...")
            t0 = time.time()
            result = run_check(step, "solutions", device, show=False,
                               relay=lambda line, s=step: say(f"step {s:02d}: {line.strip()}"))
            with lock:
                done.append(step)
                if result["status"] != "passed":
                    failed.append((step, result))
                n = len(done)
            say(f"step {step:02d} {'ok' if result['status'] == 'passed' else 'FAILED'} in "
                f"{time.time() - t0:.0f}s ({n} of {len(steps)} done)")

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def timed_say(stream=None):
    """A ``say`` for ``warm``: each line after the seconds since it was made."""
    import threading

    t0, lock = time.time(), threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(f"  [{time.time() - t0:5.0f}s] {text}", file=stream or sys.stdout, flush=True)
    return say


def cmd_warm(args) -> int:
    """Runs every reference solution's check once so MAX's caches hold its kernels and graphs,
    ``--jobs`` at a time, saying what is being compiled, n of m, and the elapsed time."""
    steps = [course.parse_step(s) for s in args.steps.split(",")] if args.steps else course.numbers()
    jobs = args.jobs or min(2, os.cpu_count() or 1)
    print("Warming MAX's caches: MAX compiles its kernels for this CPU the first time each is used\n"
          "and keeps them in ~/.cache/modular. Doing it now, once, makes each later check fast.\n"
          f"This takes several minutes on a laptop CPU ({jobs} at a time); nothing needs your attention.",
          flush=True)
    t0 = time.time()
    failed = warm(steps, args.device, jobs, timed_say())
    for step, result in failed:
        first = result.get("first_failure") or {}
        print(f"step {step:02d} FAILED:", first.get("message", ""), result.get("output_tail", ""), sep="\n")
    if failed:
        return 1
    print(f"MAX caches warm ({time.time() - t0:.0f}s in all).")
    return 0


def add_target_device(p, *, target: bool = True) -> None:
    """The --target and --device options, spelled and defaulted once for every command."""
    if target:
        p.add_argument("--target", default=course.DEFAULT_TARGET,
                       help="steps (default), solutions, or a folder with step_NN.py files")
    p.add_argument("--device", default=None, choices=course.DEVICES,
                   help=f"where MAX runs (default {course.DEFAULT_DEVICE})")


def register(sub) -> None:
    p = sub.add_parser("check", help="check one step against Hugging Face GPT-2")
    p.add_argument("step", help="s07, 07 or 7")
    add_target_device(p)
    p.add_argument("--report-json", help="write the verdict as JSON here")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing sub-check")
    p.add_argument("--weights", help="check against this pretrained GPT-2 when it is on disk (gpt2, "
                   "distilgpt2, ..., a Hub repo id or a folder; default: the seeded checkpoints)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("check-all", help="check every step")
    add_target_device(p)
    p.set_defaults(func=cmd_check_all)

    p = sub.add_parser("warm", help="compile MAX's kernels once (what setup runs)")
    add_target_device(p, target=False)
    p.add_argument("--jobs", type=int, default=0, help="checks at a time (default: 2, or 1 on one core)")
    p.add_argument("--steps", help="only these steps, e.g. 07,09,13 (default: all)")
    p.set_defaults(func=cmd_warm)
