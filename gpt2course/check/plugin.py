"""The pytest side of the learner's check: target, device, and a report a learner can read.

Every ``tests/test_step_NN.py`` sets ``STEP = NN`` and asks for the ``step``
fixture. Its tests are the step's sub-checks, in order; a test's docstring is
the sub-check's name. Failures print as: the sub-check, what was expected and
what came out, a hint, and only then where in the learner's file it broke.

The target (``--target``) and the device (``--device``) are options of this plugin and
reach the checks as attributes of the ``step`` fixture, never through the environment.
A graded run adds ``gpt2course.grade.plugin`` (``-p``), which watches through the
``observer`` below; nothing of grading lives here.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpt2course import course
from gpt2course.check import execute, learner
from gpt2course.errors import CheckFailure


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
    group.addoption("--target", default=course.DEFAULT_TARGET,
                    help="code to check: 'steps' (default), 'solutions', or a folder holding step_NN.py")
    group.addoption("--device", default=course.DEFAULT_DEVICE, choices=course.DEVICES,
                    help="where MAX runs the checks (default cpu)")
    group.addoption("--report-json", default=None, help="write per-step results to this JSON file")
    group.addoption("--weights", default=None,
                    help="check against this pretrained GPT-2 (gpt2, distilgpt2, ..., a Hub repo id or "
                    "a checkpoint folder) when it is on disk, instead of the seeded checkpoints")


def pytest_configure(config):
    config._gpt2_results = {}
    config._gpt2_printed = {}  # step -> what its code printed, summed up (shown with its results)
    config._gpt2_notes = {}    # step -> the lines its check noted (Step.note), printed last
    execute.set_reporter(_live_writer(config))
    spec = config.getoption("--weights")
    if spec:
        from gpt2course.check import harness
        from gpt2course.hf import hub

        try:
            harness.use_pretrained(hub.local_checkpoint(spec))
        except (hub.HubError, ValueError) as exc:
            raise pytest.UsageError(str(exc)) from None


def observer(config):
    """The grader's observer of this run (gpt2course.grade.plugin), or None for learners."""
    return getattr(config, "_gpt2_grading", None)


@dataclass
class Step:
    """One step under check: its file, the worker that runs its code, the device.

    The code under check is never imported here: ``remote`` (a
    ``gpt2course.check.judge_end.WorkerLink``) runs it in a worker process, and ``get``
    returns ``WorkerObject``s: the judge's names for what it defines."""

    number: int
    path: Path
    target: str = course.DEFAULT_TARGET
    device_name: str = course.DEFAULT_DEVICE
    remote: object = None
    error: CheckFailure | None = None
    cache: dict = field(default_factory=dict)
    error_reported: bool = False
    todos_reported: set = field(default_factory=set)
    watch: object = None  # the grader's observer, if any
    notes: list = field(default_factory=list)  # lines the step's report ends with (note())

    @property
    def device(self):
        """The device the worker runs MAX on (``--device``), as an argument for learner code."""
        from gpt2course.check import wire

        return wire.device()

    def get(self, name: str):
        """The step's ``name``, as a ``WorkerObject`` (calling it runs it in the worker)."""
        if self.error is not None:
            if self.error_reported:
                pytest.skip(f"skipped: {self.error.message.splitlines()[0]}")
            self.error_reported = True
            raise self.error
        with self.errors(f"reading {name}"):
            return self.remote.export(name)

    def note(self, line: str) -> None:
        """A line the step's report prints after its verdict: a figure the check computed
        (step 15: the bytes its int8 head saves), not a sub-check."""
        self.notes.append(str(line))

    def describe(self, obj) -> dict:
        """What the worker says ``obj`` is: type, dataclass and its fields, attributes."""
        with self.errors("looking at what the step defines"):
            return self.remote.describe(obj, doing="looking at what the step defines")

    @contextlib.contextmanager
    def errors(self, doing: str):
        """Calls into learner code run inside this: the worker reports its exceptions as
        messages naming the line. A TODO still open is reported by the first sub-check that
        reaches it; later ones skip, so the learner reads one message, not ten."""
        try:
            with self.remote.doing_this(doing):
                yield
        except learner.TodoNotDone as exc:
            if exc.todo in self.todos_reported:
                pytest.skip(f"skipped: {exc.message.splitlines()[0]}")
            self.todos_reported.add(exc.todo)
            raise
        finally:
            if self.watch is not None:
                self.watch.check()


@pytest.fixture(scope="module")
def step(request):
    from gpt2course.check.judge_end import WorkerLink

    config = request.config
    number = getattr(request.module, "STEP")
    target = config.getoption("--target")
    watch = observer(config)
    options = watch.worker_options(number) if watch is not None else {}
    s = Step(number, course.step_file(number, target), target, config.getoption("--device"),
             remote=WorkerLink(number, target, config.getoption("--device"), **options), watch=watch)
    if watch is not None:
        watch.remotes.append(s.remote)
    try:
        s.remote.load()
    except CheckFailure as exc:
        s.error = exc
    finally:
        if s.watch is not None:
            s.watch.started(s.remote)
    yield s
    s.remote.close()
    if s.notes:
        config._gpt2_notes[number] = list(s.notes)
    printed = s.remote.printed_summary()
    if printed:
        config._gpt2_printed[number] = printed


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
    if observer(item.config) is not None:
        observer(item.config).entry(item, call, entry)
    results.append(entry)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config._gpt2_results
    if not results:
        return
    tr = terminalreporter
    target = config.getoption("--target")
    report = {"target": target, "device": config.getoption("--device"),
              "weights": config.getoption("--weights") or "seeded", "steps": {}}
    for number in sorted(results):
        checks = results[number]
        info = course.step(number)
        path = course.display(course.step_file(number, target))
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
        for line in (config._gpt2_printed.get(number) or "").splitlines():
            tr.write_line(line)
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
                          f"More help: {course.command('hint', number)}.",
                          red=True, bold=True)
        notes = config._gpt2_notes.get(number) or []
        for line in notes:
            tr.write_line(f"  {line}")
        report["steps"][f"{number:02d}"] = {
            "status": status, "passed": passed, "total": len(checks),
            "first_failure": first_failure, "checks": checks, "notes": notes,
        }
    grading = observer(config)
    if grading is not None:
        report = grading.finish(report)
        for problem in report["grading"]["problems"]:
            tr.write_line(f"grading: {problem}", red=True)
    path = config.getoption("--report-json")
    if path:
        Path(path).write_text(json.dumps(report, indent=2))
