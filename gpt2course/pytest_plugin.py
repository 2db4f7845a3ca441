"""The pytest side of the checks: targets, devices, and reports a learner can read.

Every ``tests/test_step_NN.py`` sets ``STEP = NN`` and asks for the ``step``
fixture. Its tests are the step's sub-checks, in order; a test's docstring is
the sub-check's name. Failures print as: the sub-check, what was expected and
what came out, a hint, and only then where in the learner's file it broke.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpt2course.compare import CheckFailure
from gpt2course import ROOT, integrity, manifest, maxrun, targets

# Set by `python -m gpt2course grade` for the check processes it starts (never by learners).
GRADING_ENV = "GPT2_GRADE"
WRITABLE_ENV = "GPT2_GRADE_WRITABLE"
_GRADING = None  # the _Grading of this process, in a graded run


def _live_writer(config):
    """Prints a line to the terminal now, even while pytest captures output (compile progress)."""
    def write(msg: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if reporter is None:
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(msg)
        else:
            reporter.write_line(msg)
    return write


def pytest_addoption(parser):
    group = parser.getgroup("gpt2course")
    group.addoption("--target", default=None,
                    help="code to check: 'steps' (default), 'solutions', or a folder holding step_NN.py")
    group.addoption("--device", default=None, help="cpu (default) or gpu")
    group.addoption("--report-json", default=None, help="write per-step results to this JSON file")


def pytest_configure(config):
    target = config.getoption("--target") or os.environ.get("GPT2_TARGET") or "steps"
    os.environ["GPT2_TARGET"] = target
    if config.getoption("--device"):
        os.environ["GPT2_DEVICE"] = config.getoption("--device")
    config._gpt2_results = {}
    maxrun.set_reporter(_live_writer(config))
    config.addinivalue_line("markers", "needs_gpu: runs only when a GPU is visible")
    global _GRADING
    config._gpt2_grading = _GRADING = _Grading(config) if os.environ.get(GRADING_ENV) == "1" else None


class _Grading:
    """A graded run: the key from stdin, the write fence, the tamper guard, what was collected.

    Everything here happens before any student code is imported (that happens in the
    ``step`` fixture), so what it records is what the checking code was before."""

    def __init__(self, config):
        self.mac = self._read_key(config)
        roots = [str(ROOT), tempfile.gettempdir(), os.devnull] + [
            p for p in os.environ.get(WRITABLE_ENV, "").split(os.pathsep) if p]
        self.fence = integrity.install_write_fence(roots)
        self.guard = None
        self.collected: dict[int, int] = {}
        self.problems: list[str] = []
        self.ledger: list[tuple[int, str]] = []  # each result as first recorded, frozen as text
        self.config = config

    @staticmethod
    def _read_key(config):
        """One line of hex on stdin, read while pytest's capture is lifted from it."""
        capman = config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            capman.suspend_global_capture(in_=True)
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) < 256:
                ready, _, _ = select.select([0], [], [], 30)
                if not ready:
                    break
                chunk = os.read(0, 256 - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            data = b""
        finally:
            if capman is not None:
                capman.resume_global_capture()
        try:
            return integrity.signer(data.decode().strip()) if data.strip() else None
        except ValueError:
            return None

    def start(self, session):
        for item in session.items:
            number = getattr(getattr(item, "module", None), "STEP", None)
            if number is not None:
                self.collected[number] = self.collected.get(number, 0) + 1
        tests = [name for name, mod in list(sys.modules.items())
                 if getattr(mod, "__file__", None) and Path(mod.__file__).resolve().parent == ROOT / "tests"]
        self.guard = integrity.Guard(extra_modules=tests).snapshot(session.config.pluginmanager)

    def check(self) -> None:
        found = list(self.fence.violations)
        del self.fence.violations[:]
        for v in found:
            self.problems.append(f"the submission tried to write outside its workspace: {v}")
        if self.guard is not None:
            for p in self.guard.verify():
                self.problems.append(f"the submission modified the checking code: {p}")

    @contextlib.contextmanager
    def watching(self, cm):
        try:
            with cm:
                yield
        finally:
            self.check()

    def entry(self, item, call, entry) -> None:
        if item.get_closest_marker("needs_gpu") is not None and entry["outcome"] == "skipped":
            entry["gpu_only"] = True
        if call.excinfo is not None and not isinstance(call.excinfo.value, CheckFailure):
            entry["exception"] = type(call.excinfo.value).__name__
        self.ledger.append((getattr(item.module, "STEP", None), json.dumps(entry, sort_keys=True, default=str)))

    def finish(self, report: dict) -> dict:
        self.check()
        results = self.config._gpt2_results
        now = [(n, json.dumps(c, sort_keys=True, default=str)) for n in results for c in results[n]]
        if sorted(now, key=str) != sorted(self.ledger, key=str):
            self.problems.append("the submission modified the checking code: "
                                 "results were changed after they were recorded")
        report["grading"] = {"collected": {f"{n:02d}": c for n, c in sorted(self.collected.items())},
                             "problems": self.problems[:50], "signed": self.mac is not None}
        if self.mac is not None:
            report["signature"] = integrity.sign(self.mac, report)
        return report


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    grading = session.config._gpt2_grading
    if grading is not None:
        grading.start(session)


def pytest_runtest_logfinish(nodeid, location):
    if _GRADING is not None:
        _GRADING.check()


@dataclass
class Step:
    number: int
    path: Path
    module: object = None
    error: CheckFailure | None = None
    cache: dict = field(default_factory=dict)
    error_reported: bool = False

    def get(self, name: str):
        if self.error is not None:
            if self.error_reported:
                pytest.skip(f"skipped: {self.error.message.splitlines()[0]}")
            self.error_reported = True
            raise self.error
        return targets.export(self.module, self.number, name, self.path)

    def errors(self, doing: str):
        cm = targets.learner_errors(self.number, self.path, doing)
        return cm if _GRADING is None else _GRADING.watching(cm)


@pytest.fixture(scope="module")
def step(request) -> Step:
    number = getattr(request.module, "STEP")
    path = targets.step_file(number)
    s = Step(number, path)
    try:
        s.module = targets.load(number)
    except CheckFailure as exc:
        s.error = exc
    finally:
        if _GRADING is not None:
            _GRADING.check()
    return s


def _title(item) -> str:
    doc = getattr(item.function, "__doc__", None) or item.name
    return doc.strip().splitlines()[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    number = getattr(item.module, "STEP", None)
    if number is None or report.when not in ("setup", "call"):
        return
    if report.when == "setup" and report.passed:
        return
    results = item.config._gpt2_results.setdefault(number, [])
    entry = {"check": _title(item), "outcome": report.outcome, "seconds": round(call.duration, 3)}
    if call.excinfo is not None:
        exc = call.excinfo.value
        if isinstance(exc, CheckFailure):
            entry["message"] = exc.message
            entry["hint"] = exc.hint
            report.longrepr = str(exc)
        elif report.skipped:
            entry["message"] = str(getattr(exc, "msg", exc))
        else:
            entry["message"] = f"{type(exc).__name__}: {exc}"
    if item.config._gpt2_grading is not None:
        item.config._gpt2_grading.entry(item, call, entry)
    results.append(entry)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config._gpt2_results
    if not results:
        return
    tr = terminalreporter
    target = os.environ.get("GPT2_TARGET", "steps")
    report = {"target": target, "device": os.environ.get("GPT2_DEVICE", "cpu"), "steps": {}}
    for number in sorted(results):
        checks = results[number]
        info = manifest.step(number)
        path = targets.display(targets.step_file(number))
        tr.write_line("")
        tr.write_line(f"step {number:02d} - {info['title']}   [{path}]", bold=True)
        first_failure = None
        for c in checks:
            mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[c["outcome"]]
            colour = {"PASS": {"green": True}, "FAIL": {"red": True}, "SKIP": {"yellow": True}}[mark]
            tr.write_line(f"  {mark}  {c['check']}", **colour)
            if c["outcome"] == "failed" and first_failure is None:
                first_failure = c
                for line in c.get("message", "").splitlines():
                    tr.write_line(f"        {line}")
                if c.get("hint"):
                    tr.write_line(f"        hint: {c['hint']}", yellow=True)
        passed = sum(c["outcome"] == "passed" for c in checks)
        failed = any(c["outcome"] == "failed" for c in checks)
        status = "failed" if failed or passed == 0 else "passed"
        if status == "passed":
            tr.write_line(f"step {number:02d} passed: {passed}/{len(checks)} checks match Hugging Face.",
                          green=True, bold=True)
        else:
            hints = info.get("hints") or []
            if hints and first_failure is not None:
                tr.write_line(f"  first hint for step {number:02d}: {hints[0]}", yellow=True)
            tr.write_line(f"step {number:02d} not passing yet: {passed}/{len(checks)} checks pass. "
                          f"More help: `make hint STEP={number:02d}` (pixi run hint s{number:02d}).",
                          red=True, bold=True)
        report["steps"][f"{number:02d}"] = {
            "status": status, "passed": passed, "total": len(checks),
            "first_failure": first_failure, "checks": checks,
        }
    grading = config._gpt2_grading
    if grading is not None:
        report = grading.finish(report)
        for problem in report["grading"]["problems"]:
            tr.write_line(f"grading: {problem}", red=True)
    path = config.getoption("--report-json")
    if path:
        Path(path).write_text(json.dumps(report, indent=2))
