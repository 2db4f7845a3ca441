"""The grader's half of a graded check, loaded only by the grader (``-p gpt2course.grade.plugin``).

This process is the judge: it never imports the code under check (the step fixture of
gpt2course.check.plugin runs it in a worker process, gpt2course.check.judge_end). Here it
reads the report key from stdin, draws this run's secret seed (the checks' weights and
inputs), starts each worker through the isolation launcher (its own PID and network
namespaces, no capabilities, a seccomp filter: gpt2course.grade.isolation) and tells it how
to confine itself (what it may read and write: gpt2course.grade.allowed), turns what the
workers' fences and import refusers reported, and what a worker asked that the judge does not
answer, into problems, and signs the report at the end. The learner's plugin sees it only as
its ``observer``.
"""

from __future__ import annotations

import json
import os
import secrets
import select

import pytest

from gpt2course.course import ROOT
from gpt2course.errors import CheckFailure
from gpt2course.grade import signing


def pytest_addoption(parser):
    group = parser.getgroup("gpt2course grading")
    group.addoption("--grade-writable", action="append", default=[], metavar="PATH",
                    help="a folder the check's worker may write besides its scratch folder (the grader "
                    "passes MAX's cache and these)")
    group.addoption("--grade-public-inputs", action="store_true",
                    help="use the public seeded checkpoints instead of a secret seed (tests only)")


_GRADING = None  # this process's _Grading: pytest_runtest_logfinish is given no config


def pytest_configure(config):
    global _GRADING
    from gpt2course.grade.isolation import protect_from_workers

    protect_from_workers()  # no worker may read this process's memory, environment or maps
    config._gpt2_grading = _GRADING = _Grading(config)


class _Grading:
    """A graded run: the key from stdin, the secret seed, the workers' rules, their reports."""

    def __init__(self, config):
        self.mac = self._read_key(config)
        self.collected: dict[int, int] = {}
        self.problems: list[str] = []
        self.remotes: list = []
        self.held: list[str] | None = None     # what the first worker's confinement held
        self.config = config
        self.judge_dir = ROOT / ".judge"       # the judge's own files: no worker may read them
        self.scratch = ROOT / "worker"         # the only folder a worker may write (and MAX's cache)
        self.judge_dir.mkdir(exist_ok=True)
        self.scratch.mkdir(exist_ok=True)
        (self.scratch / "tmp").mkdir(exist_ok=True)
        self.seed = None
        if not config.getoption("--grade-public-inputs"):
            from gpt2course.check import harness

            self.seed = secrets.randbits(31)
            harness.use_secret_seed(self.seed, self.judge_dir / "checkpoints")

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

    def worker_options(self, number: int) -> dict:
        """How the step fixture starts this step's worker: confined, in its scratch folder.

        MAX's default eager executor compiles in a pool of processes started on first use:
        started before the worker confines itself it would stay outside the rules (and take
        pickled work from inside them); after, it cannot start a Python at all. So a graded
        worker runs MAX's in-process executor (max_install.EAGER_EXECUTOR, what every check's
        worker runs; here it is forced, whatever the grader's environment says)."""
        import sys

        from gpt2course.grade import allowed
        from gpt2course.max_install import EAGER_EXECUTOR, child_env

        spec = allowed.worker_spec(ROOT, number, [str(self.scratch)])
        spec["write"] += list(self.config.getoption("--grade-writable"))
        spec["network"] = False
        env = {k: v for k, v in child_env().items() if not k.startswith(("PYTEST_", "GPT2_COURSE"))}
        env.update(PYTHONPATH=str(ROOT), TMPDIR=str(self.scratch / "tmp"), PYTHONDONTWRITEBYTECODE="1",
                   MAX_EAGER_EXECUTOR=EAGER_EXECUTOR)
        return {"confine": json.dumps(spec), "env": env, "cwd": str(self.scratch),
                "prefix": [sys.executable, "-m", "gpt2course.grade.isolation", "worker", "--"]}

    def started(self, remote) -> None:
        """The worker is up (the step loaded, or failed to): note what its confinement holds."""
        if self.held is None and remote.proc is not None:
            try:
                self.held = remote.confinement()
            except CheckFailure:
                self.held = []
        self.check()

    def check(self) -> None:
        """What the workers' fences and import refusers reported since the last look, and what
        a worker asked of the judge that the judge does not answer."""
        for remote in self.remotes:
            found, remote.alerts[:] = list(remote.alerts), []
            for alert in found:
                self.problems.append(f"the submission tried to reach outside its sandbox: {alert}")
            asked, remote.refusals[:] = list(remote.refusals), []
            for what in asked:
                self.problems.append(f"the submission asked the checking process for what it does not "
                                     f"answer: {what}")

    def entry(self, item, call, entry) -> None:
        if item.get_closest_marker("needs_gpu") is not None and entry["outcome"] == "skipped":
            entry["gpu_only"] = True
        if call.excinfo is not None and not isinstance(call.excinfo.value, CheckFailure):
            entry["exception"] = type(call.excinfo.value).__name__

    def finish(self, report: dict) -> dict:
        self.check()
        report["grading"] = {"collected": {f"{n:02d}": c for n, c in sorted(self.collected.items())},
                             "problems": self.problems[:50], "signed": self.mac is not None,
                             "inputs": "public seed" if self.seed is None else f"secret seed {self.seed}",
                             "confinement": _check_held() + list(self.held or [])}
        if self.mac is not None:
            report["signature"] = signing.sign(self.mac, report)
        return report


def _check_held() -> list[str]:
    """What the sandbox wrapper made hold for this whole check (gpt2course.grade.sandbox)."""
    from gpt2course.grade.sandbox import HELD_ENV

    try:
        held = json.loads(os.environ.get(HELD_ENV, "[]"))
    except ValueError:
        return []
    return [str(line) for line in held] if isinstance(held, list) else []


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    grading = session.config._gpt2_grading
    for item in session.items:
        number = getattr(getattr(item, "module", None), "STEP", None)
        if number is not None:
            grading.collected[number] = grading.collected.get(number, 0) + 1


def pytest_runtest_logfinish(nodeid, location):
    if _GRADING is not None:
        _GRADING.check()
