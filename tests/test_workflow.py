"""The learner's loop (gpt2course/learn/): progress, hint, reset, watch and doctor.

Every command runs as a learner runs it (``python -m gpt2course ...``), but in a
copy of the course under tmp_path, so the real steps/, .progress/ and .backups/
are never touched. Only step 01 is ever checked: it needs no MAX compile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpt2course import course as facts
from gpt2course.check import verdicts
from gpt2course.course import ROOT
from gpt2course.learn import progress, reset, watch
from gpt2course.skeleton import pristine_skeleton

COPIED = ["gpt2course", "solutions", "steps", "tests", "requirements.txt"]
SOLUTION_01 = (ROOT / "solutions" / "solution_01.py").read_text()
WRONG_01 = SOLUTION_01.replace("50257", "50000")  # one wrong number: the first check fails
N_STEPS = len(facts.numbers())


@pytest.fixture
def course(tmp_path) -> Path:
    """A private copy of the course whose steps/ are the untouched skeletons."""
    root = tmp_path / "course"
    root.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, root / name)
    for n in facts.numbers():  # whatever the real steps/ hold, the copy starts untouched
        (root / "steps" / f"step_{n:02d}.py").write_text(pristine_skeleton(n))
    return root


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def cli(root: Path, *args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *flags, "-m", "gpt2course", *args], cwd=root, env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def row(output: str, step: int) -> str:
    """The progress table's line for a step."""
    lines = [line for line in output.splitlines() if line[4:6] == f"{step:02d}" and line.startswith("[")]
    assert len(lines) == 1, output
    return lines[0]


# --------------------------------------------------------------------------- progress

def test_progress_on_an_untouched_course_runs_no_check(course):
    out = cli(course, "progress").stdout
    assert f"Your progress: 0 of {N_STEPS} steps done" in out
    for n in facts.numbers():
        assert "not started" in row(out, n) and facts.step(n)["title"] in row(out, n)
    assert "running the check" not in out
    assert "Next: step 01 — open steps/step_01.py at TODO 1 (line " in out
    assert "`make s01`" in out


def test_progress_checks_edited_steps_and_remembers_unchanged_ones(course):
    step01 = course / "steps" / "step_01.py"

    # A wrong number: failing, with the failing check and what was expected, on one line.
    step01.write_text(WRONG_01)
    out = cli(course, "progress").stdout
    assert out.count("running the check for step") == 1 and "running the check for step 01" in out
    assert "failing" in row(out, 1) and "1/2 checks pass" in row(out, 1)
    assert ("first failure: defaults equal transformers.GPT2Config()'s: "
            "GPT2Config().vocab_size: expected 50257, got 50000") in out
    assert 'Next: step 01 — in steps/step_01.py, the check "defaults equal' in out

    # Nothing changed: the remembered verdict is shown and no check runs.
    out = cli(course, "progress").stdout
    assert "running the check" not in out
    assert "failing" in row(out, 1) and row(out, 1).endswith("(cached)")
    assert "1 result(s) reused from .progress/" in out

    # Fixed: checked again, done, and the next step is 02.
    step01.write_text(SOLUTION_01)
    out = cli(course, "progress").stdout
    assert "running the check for step 01" in out
    assert "done" in row(out, 1) and "2/2 checks pass" in row(out, 1)
    assert f"Your progress: 1 of {N_STEPS} steps done" in out
    assert "Next: step 02 — open steps/step_02.py at TODO 1" in out
    saved = json.loads((course / ".progress" / "results.json").read_text())
    assert saved["01"]["result"]["status"] == "passed"

    # A passing step whose files did not change is not checked again ...
    out = cli(course, "progress").stdout
    assert "running the check" not in out and row(out, 1).endswith("(cached)")
    # ... unless --no-cache says so.
    out = cli(course, "progress", "--no-cache").stdout
    assert "running the check for step 01" in out and "(cached)" not in row(out, 1)


def test_an_edited_step_whose_todo_1_still_raises_is_not_started(course, monkeypatch):
    monkeypatch.setattr(facts, "ROOT", course)
    monkeypatch.setattr(facts, "PROGRESS_DIR", course / ".progress")
    step01 = course / "steps" / "step_01.py"
    step01.write_text(pristine_skeleton(1) + "# my notes\n")
    # The verdict the check gives such a file, remembered as a check run would remember it.
    verdicts.remember(1, verdicts.cache_key(1, "steps", None), {
        "status": "failed", "passed": 0, "total": 2, "first_failure": {
            "check": "defaults equal transformers.GPT2Config()'s",
            "message": "step 01 not implemented yet: start at TODO 1 (steps/step_01.py line 15)"}})
    said = []
    status = progress.step_status(1, "steps", say=said.append)
    assert said == [] and status["cached"]
    assert status["status"] == progress.NOT_STARTED and "TODO 1 still raises" in status["detail"]
    assert progress.current_step() == 1


def test_cache_key_covers_the_files_a_verdict_depends_on(course, monkeypatch):
    monkeypatch.setattr(facts, "ROOT", course)
    key1, key2 = verdicts.cache_key(1, "steps", None), verdicts.cache_key(2, "steps", None)
    assert verdicts.cache_key(1, "steps", "gpu") != key1  # the device is part of the verdict

    (course / "solutions" / "solution_05.py").write_text("# a later solution step 02 cannot import\n")
    assert verdicts.cache_key(2, "steps", None) == key2
    with open(course / "solutions" / "solution_01.py", "a") as f:  # step 02 may import step 01's answer
        f.write("# changed\n")
    assert verdicts.cache_key(2, "steps", None) != key2
    with open(course / "tests" / "test_step_01.py", "a") as f:  # the check itself changed
        f.write("# changed\n")
    assert verdicts.cache_key(1, "steps", None) != key1


def test_progress_table_and_next_line_speak_to_the_learner():
    rows = [
        {"step": 1, "title": "Model configuration", "status": progress.DONE, "detail": "2/2 checks pass",
         "cached": True, "path": ROOT / "steps" / "step_01.py"},
        {"step": 2, "title": "Causal mask", "status": progress.FAILING, "detail": "1/2 checks pass",
         "cached": False, "path": ROOT / "steps" / "step_02.py", "check": "mask values",
         "message": "max abs error inf at [0, 1]", "failure": "mask values: max abs error inf at [0, 1]"},
        {"step": 7, "title": "Multi-head attention", "status": progress.NO_CHECK,
         "detail": "edited; TODO 2 still open (this step's check is not written yet)", "cached": False,
         "path": ROOT / "steps" / "step_07.py"},
    ]
    table = progress.render_table(rows, width=160)
    assert "Your progress: 1 of 3 steps done" in table
    assert "[x] 01    Model configuration" in table and "2/2 checks pass (cached)" in table
    assert "[!] 02    Causal mask" in table
    assert "          first failure: mask values: max abs error inf at [0, 1]" in table
    assert "no check yet" in table
    nxt = progress.next_step_line(rows)
    assert nxt.startswith('Next: step 02 — in steps/step_02.py, the check "mask values" fails')
    assert "`make s02`" in nxt and "`make hint STEP=02`" in nxt
    assert progress.next_step_line([rows[0]]).startswith("Next: all steps pass")


# --------------------------------------------------------------------------- hint

def test_hint_unfolds_one_at_a_time_and_remembers(course):
    hints = facts.step(1)["hints"]
    assert len(hints) == 3
    out = cli(course, "hint", "s01").stdout
    assert f"(hint 1 of 3) {hints[0]}" in out and hints[1] not in out
    assert "Still open in steps/step_01.py: TODO 1 (line " in out
    out = cli(course, "hint", "01").stdout  # a new process: the count was remembered
    assert f"(hint 2 of 3) {hints[1]}" in out and hints[0] not in out
    out = cli(course, "hint").stdout  # no step: the first one not passing (01, untouched)
    assert "using step 01" in out and f"(hint 3 of 3) {hints[2]}" in out and "last hint" in out
    out = cli(course, "hint", "1").stdout
    assert "You have seen all 3 hints for step 01" in out and "solutions/solution_01.py" in out
    assert not any(h in out for h in hints)
    out = cli(course, "hint", "s01", "--all").stdout
    assert all(f"(hint {i} of 3) {h}" in out for i, h in enumerate(hints, 1))
    assert json.loads((course / ".progress" / "hints.json").read_text()) == {"01": 3}
    out = cli(course, "hint", "s02").stdout  # each step counts on its own
    assert f"(hint 1 of {len(facts.step(2)['hints'])}) {facts.step(2)['hints'][0]}" in out


# --------------------------------------------------------------------------- reset

def test_reset_backs_up_restores_and_never_loses_work(course):
    step01, backups = course / "steps" / "step_01.py", course / ".backups"

    out = cli(course, "reset", "s01").stdout
    assert "already the untouched skeleton" in out and not backups.exists()

    step01.write_text(WRONG_01)
    out = cli(course, "reset", "01").stdout
    saved = list(backups.glob("step_01-*.py"))
    assert len(saved) == 1 and saved[0].read_text() == WRONG_01
    assert len(saved[0].stem) == len("step_01-YYYYmmdd-HHMMSS")
    assert f"Saved your step 01 to .backups/{saved[0].name}" in out
    assert step01.read_text() == pristine_skeleton(1)
    assert "start at TODO 1" in out

    out = cli(course, "reset", "s01").stdout  # nothing left to reset: no second backup
    assert "nothing to reset" in out and len(list(backups.iterdir())) == 1

    step01.unlink()
    out = cli(course, "reset", "s01").stdout
    assert "was missing" in out and step01.read_text() == pristine_skeleton(1)


def test_a_backup_never_replaces_another(tmp_path):
    step01, backups = tmp_path / "step_01.py", tmp_path / "backups"
    backups.mkdir()
    older = backups / "step_01-20250101-120000.py"
    older.write_text("the learner's earlier work\n")
    step01.write_text(WRONG_01)
    what, backup = reset.reset_step(1, step01, backups, stamp="20250101-120000")
    assert what == "restored" and backup.name == "step_01-20250101-120000-1.py"
    assert older.read_text() == "the learner's earlier work\n" and backup.read_text() == WRONG_01
    assert step01.read_text() == pristine_skeleton(1)


# --------------------------------------------------------------------------- watch

class Live:
    """A command running in the background whose output lines can be awaited."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gpt2course", *args], cwd=root, env=clean_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.done = False
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 180) -> int:
        """The index of the first line after ``after`` containing ``text``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                if self.done or time.monotonic() > deadline:
                    raise AssertionError(f"no {text!r} in the output:\n{self.output}")
                self.cond.wait(0.5)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_watch_with_file_events_rechecks_on_save(course, tmp_path):
    if watch.file_events_problem(course / "steps" / "step_01.py") is not None:
        pytest.skip("file events do not work where tmp_path lives")
    step01 = course / "steps" / "step_01.py"
    step01.write_text(WRONG_01)
    live = Live(course, "watch", "s01", "--once-after-change")
    try:
        assert "watching steps/step_01.py with file events (inotify)" in live.lines[live.wait_for("watching")]
        first = live.wait_for("Waiting for you to save steps/step_01.py")
        assert "VERDICT: step 01 not passing yet (1/2 checks)" in live.output
        # Save as many editors do: write a new file, then rename it over the old one.
        tmp = step01.with_name(".step_01.py.swp")
        tmp.write_text(SOLUTION_01)
        os.replace(tmp, step01)
        saved = live.wait_for("steps/step_01.py saved: checking step 01 again", after=first)
        live.wait_for("VERDICT: step 01 passes — all 2 checks match Hugging Face", after=saved)
        assert live.proc.wait(timeout=60) == 0
    finally:
        live.close()
    assert "Traceback" not in live.output


def test_watch_by_polling_rechecks_on_save_and_stops_cleanly_on_ctrl_c(course):
    step01 = course / "steps" / "step_01.py"
    step01.write_text(WRONG_01)
    live = Live(course, "watch", "01", "--poll")
    try:
        assert "watching steps/step_01.py by polling every 0.5s" in live.lines[live.wait_for("watching")]
        first = live.wait_for("Waiting for you to save")
        step01.write_text(SOLUTION_01)  # saved in place
        saved = live.wait_for("saved: checking step 01 again", after=first)
        live.wait_for("VERDICT: step 01 passes", after=saved)
        live.wait_for("Waiting for you to save", after=saved)
        live.proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = live.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # seen once (2026-12-08), not reproduced: keep what it said
            raise AssertionError(f"watch still running 30 s after Ctrl-C; it printed:\n{live.output}") from None
        assert code == 0, live.output
    finally:
        live.close()
    assert "Stopped watching steps/step_01.py." in live.output
    assert "Traceback" not in live.output and "KeyboardInterrupt" not in live.output


MOUNTS = """\
overlay / overlay rw,relatime 0 0
server:/export/home /home/ada nfs4 rw,relatime 0 0
C:\\134 /mnt/c 9p rw,dirsync,aname=drvfs 0 0
/dev/sdb1 /data\\040disk ext4 rw 0 0
"""


def test_file_events_fallback_is_detected_and_said(tmp_path):
    problem = watch.file_events_problem
    assert problem(Path("/work/steps/step_01.py"), mounts=MOUNTS, osrelease="6.8.0", platform="linux") is None
    assert problem(Path("/data disk/steps/step_01.py"), mounts=MOUNTS, osrelease="6.8.0", platform="linux") is None
    nfs = problem(Path("/home/ada/course/steps/step_01.py"), mounts=MOUNTS, osrelease="6.8.0", platform="linux")
    assert "nfs4 network or shared drive" in nfs
    wsl = problem(Path("/mnt/c/Users/ada/course/steps/step_01.py"), mounts=MOUNTS,
                  osrelease="5.15.153.1-microsoft-standard-WSL2", platform="linux")
    assert "Windows drive seen from WSL" in wsl
    assert "Linux-only" in problem(Path("/x"), mounts="", osrelease="", platform="darwin")

    target = tmp_path / "step_01.py"
    target.write_text("x = 1\n")
    nfs_here = f"server:/export {tmp_path} nfs rw 0 0\n"
    watcher, how = watch.choose_watcher(target, mounts=nfs_here, osrelease="6.8.0", platform="linux")
    assert isinstance(watcher, watch.PollWatcher)
    assert how.startswith(f"watching {target} by polling every 0.5s (file events unavailable here: ")
    assert "nfs network or shared drive" in how


# --------------------------------------------------------------------------- doctor

DOCTOR_TOPICS = ["Python 3.", "MAX", "MAX kernel cache:", "torch", "transformers", "GPT-2 tokenizer files",
                 "disk:", "GPU:", "pixi:"]


def test_doctor_reports_each_part_of_the_environment(course):
    proc = cli(course, "doctor")
    lines = [line for line in proc.stdout.splitlines() if line[2:6].strip() in ("OK", "FAIL", "WARN", "INFO")]
    for topic in DOCTOR_TOPICS:
        assert any(topic in line for line in lines), f"no line about {topic}:\n{proc.stdout}"
    assert any(line.startswith("  OK    Python 3.11") for line in lines)
    assert any("GPU:" in line and line.startswith("  INFO") for line in lines)  # never a failure
    failed = [line for line in lines if line.startswith("  FAIL")]
    assert proc.returncode == (1 if failed else 0), proc.stdout


def test_doctor_runs_without_the_packages_and_says_how_to_fix(course):
    proc = cli(course, "doctor", flags=("-S",))  # -S: no site-packages, as a bare system Python
    assert proc.returncode == 1
    assert "  FAIL  MAX is not installed" in proc.stdout
    assert "  FAIL  torch is not installed" in proc.stdout
    assert "fix: make setup" in proc.stdout  # the copy has no .venv yet
    assert "INFO  GPU: unknown" in proc.stdout
    assert "problem(s): fix the FAIL lines above" in proc.stdout
