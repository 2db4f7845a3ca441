"""The grader's half of a graded check, loaded only by the grader (``-p gpt2course.grade.plugin``).

It reads the report key from stdin, installs the write fence and the tamper guard before any
student code is imported (that happens in the ``step`` fixture of gpt2course.check.plugin),
records each result as it is first made, and signs the report at the end. The learner's
plugin sees it only as its ``observer``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import tempfile
from pathlib import Path

import pytest

from gpt2course.course import ROOT
from gpt2course.errors import CheckFailure
from gpt2course.grade import fence, guard, signing


def pytest_addoption(parser):
    parser.getgroup("gpt2course grading").addoption(
        "--grade-writable", action="append", default=[], metavar="PATH",
        help="a folder the check may write besides its workspace (the grader passes these)")


_GRADING = None  # this process's _Grading: pytest_runtest_logfinish is given no config


def pytest_configure(config):
    global _GRADING
    config._gpt2_grading = _GRADING = _Grading(config)


class _Grading:
    """A graded run: the key from stdin, the write fence, the tamper guard, what was collected.

    Everything here happens before any student code is imported (that happens in the
    ``step`` fixture), so what it records is what the checking code was before."""

    def __init__(self, config):
        self.mac = self._read_key(config)
        roots = [str(ROOT), tempfile.gettempdir(), os.devnull, *config.getoption("--grade-writable")]
        self.fence = fence.install_write_fence(roots)
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
            return signing.signer(data.decode().strip()) if data.strip() else None
        except ValueError:
            return None

    def start(self, session):
        for item in session.items:
            number = getattr(getattr(item, "module", None), "STEP", None)
            if number is not None:
                self.collected[number] = self.collected.get(number, 0) + 1
        tests = [name for name, mod in list(sys.modules.items())
                 if getattr(mod, "__file__", None) and Path(mod.__file__).resolve().parent == ROOT / "tests"]
        self.guard = guard.Guard(extra_modules=tests).snapshot(session.config.pluginmanager)

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
            report["signature"] = signing.sign(self.mac, report)
        return report


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    grading = session.config._gpt2_grading
    if grading is not None:
        grading.start(session)


def pytest_runtest_logfinish(nodeid, location):
    if _GRADING is not None:
        _GRADING.check()
