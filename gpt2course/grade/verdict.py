"""A check's verdict, decided from how its process ended and its signed report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gpt2course.grade import signing
from gpt2course.text import clean_text

if TYPE_CHECKING:
    from gpt2course.grade.runner import Options

STATUSES = ("passed", "failed", "error", "timeout", "missing")
MAX_REPORT = 32 << 20


@dataclasses.dataclass
class Verdict:
    student: str
    step: int
    status: str
    check: str | None = None
    message: str | None = None
    hint: str | None = None
    passed_checks: int = 0
    total_checks: int = 0
    seconds: float = 0.0
    log: str | None = None

    def cleaned(self) -> "Verdict":
        """Every string that came from the check made safe to print and store (the one place
        the grader takes text from a check: gpt2course.text.clean_text)."""
        for name, limit in (("check", 300), ("message", 4000), ("hint", 1000)):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, clean_text(value, limit))
        return self

    def as_dict(self) -> dict:
        return {"status": self.status, "check": self.check, "message": self.message, "hint": self.hint,
                "passed_checks": self.passed_checks, "total_checks": self.total_checks,
                "seconds": round(self.seconds, 2), "log": self.log}


def gib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"



def _stopped(v: Verdict, reason: str | None, opts: Options, stalled: str | None = None) -> Verdict | None:
    """The verdict of a check the runner stopped (timeout, memory, output, stalled), else None."""
    if reason == "stalled":
        v.message = (f"the check stopped working: its processes used no CPU for {opts.stall:g} s, "
                     f"waiting on something that never came (a lock, a pipe): {stalled or 'unknown'}")
    elif reason == "timeout":
        v.status, v.message = "timeout", f"did not finish within {opts.timeout:g} s (--timeout)"
    elif reason == "memory":
        v.message = f"ran out of memory: a process went over {gib(opts.memory)} (--memory)"
    elif reason == "output":
        v.message = f"printed more than {gib(opts.max_output)} of output"
    else:
        return None
    return v


def read_report(path: Path) -> dict | None:
    try:
        if path.is_file() and path.stat().st_size <= MAX_REPORT:
            report = json.loads(path.read_text())
            return report if isinstance(report, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return None


def _no_report(v: Verdict, rc: int | None, output: str, opts: Options) -> Verdict:
    if "MemoryError" in output:
        v.message = f"ran out of memory (limit {gib(opts.memory)}, --memory)"
    elif rc is not None and rc < 0:
        v.message = f"the check process was killed by signal {-rc} before it wrote its report"
    else:
        v.message = (f"the check process ended (exit code {rc}) without writing its report: "
                     "does the file call sys.exit() or os._exit(), or end the process?")
    return v


def _untrusted(report: dict, key: str) -> str | None:
    """Why a report cannot be trusted (not signed with this run's key, or the check saw tampering)."""
    if not signing.signature_ok(key, report):
        return "the report was not written by the checking code (its signature does not match)"
    problems = (report.get("grading") or {}).get("problems") or []
    if problems:  # the first three, in the order they happened
        return "; ".join(str(p) for p in problems[:3]) + (
            f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    return None


def _from_checks(v: Verdict, report: dict, nn: str, rc: int | None, opts: Options) -> Verdict:
    """The verdict of a trusted report: passed only if every collected sub-check ran and passed."""
    data = report["steps"][nn]
    checks = data.get("checks") or []
    v.total_checks = len(checks)
    v.passed_checks = sum(c.get("outcome") == "passed" for c in checks)
    exits = [c for c in checks if c.get("exception") in ("SystemExit", "KeyboardInterrupt", "GeneratorExit")]
    if exits:
        v.check = exits[0].get("check")
        v.message = (f"the submission tried to end the check ({exits[0]['exception']}); "
                     "a step file must not call sys.exit()")
        return v
    if any("MemoryError" in (c.get("message") or "") for c in checks):
        v.message = f"ran out of memory (limit {gib(opts.memory)}, --memory)"
        return v
    collected = ((report.get("grading") or {}).get("collected") or {}).get(nn)
    if collected is not None and collected != len(checks):
        v.message = f"only {len(checks)} of the step's {collected} checks ran"
        return v
    ok = all(c.get("outcome") == "passed" or (c.get("outcome") == "skipped" and c.get("gpu_only"))
             for c in checks)
    if ok and v.passed_checks > 0:
        if rc != 0:
            v.message = f"every check passed but the check process exited with code {rc}"
            return v
        v.status = "passed"
        return v
    v.status = "failed"
    first = data.get("first_failure") or next((c for c in checks if c.get("outcome") != "passed"), None)
    if first:
        v.check, v.message, v.hint = first.get("check"), first.get("message"), first.get("hint")
    else:
        v.message = "no check passed"
    return v


def judge(student: str, step: int, key: str, report_path: Path, rc: int | None, reason: str | None,
          output: str, opts: Options, stalled: str | None = None) -> Verdict:
    """The verdict of one check, from how it ended and its signed report."""
    v = Verdict(student, step, "error")
    stopped = _stopped(v, reason, opts, stalled)
    if stopped is not None:
        return stopped.cleaned()
    nn = f"{step:02d}"
    report = read_report(report_path)
    if report is None or not isinstance(report.get("steps"), dict) or nn not in report["steps"]:
        return _no_report(v, rc, output, opts).cleaned()
    problem = _untrusted(report, key)
    if problem is not None:
        v.message = problem
        return v.cleaned()
    return _from_checks(v, report, nn, rc, opts).cleaned()
