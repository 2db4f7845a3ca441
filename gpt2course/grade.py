"""`python -m gpt2course grade DIR`: grade a class, every step of every student, in isolation.

DIR holds one folder (or .zip) per student with that student's ``steps/step_NN.py`` files
(any subset; ``step_NN.py`` directly in the folder works too). Each (student, step) is
checked with the same per-step check learners run (``cli.check_command``), in its own
process and its own temporary workspace that holds the course's checking code, the
reference solutions of the *earlier* steps only, and the student's file for that step.
So a broken step 03 costs only step 03, and ``import solutions.solution_NN`` for the step
being graded fails.

Each check runs under ``gpt2course.integrity``'s sandbox: a wall-time limit, a memory
limit, an output cap, a key on stdin that signs its report, a tamper guard, and (on Linux
with Landlock) no writes outside its workspace. Verdicts: passed, failed, error, timeout,
missing. Results: a table in the terminal and ``grades.json``, ``grades.csv``,
``summary.csv``, ``junit.xml`` and one capped log per check under ``--out``.
"""

from __future__ import annotations

import concurrent.futures
import csv
import ctypes
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from gpt2course import ROOT, integrity, manifest

STATUSES = ("passed", "failed", "error", "timeout", "missing")
MARKS = {"passed": "ok", "failed": "FAIL", "error": "ERR", "timeout": "TIME", "missing": "-"}
# A step-10 or -11 check that compiles its model from scratch (a student whose code differs
# from the solution) took up to 15 min here with both cores busy; seconds when cached.
DEFAULT_TIMEOUT = 1200.0
# RLIMIT_DATA per process (and an RSS watchdog). Step 03 passes with 1 GiB and fails with
# 512 MiB; steps 10-11 also check at GPT-2 124M shapes (two copies of 500 MB of weights plus a
# MAX compile), hence the headroom.
DEFAULT_MEMORY = "8G"
DEFAULT_MAX_OUTPUT = "64M"
LOG_KEEP = 1 << 20           # bytes of each check's output kept (head and tail)
MAX_STEP_FILE = 1 << 20      # a step file larger than this is refused
MAX_REPORT = 32 << 20
SKIP_DIRS = {".git", "__MACOSX", "__pycache__", ".venv", "venv", "node_modules", "solutions", ".github"}
STEP_RE = re.compile(r"^step_(\d{2})\.py$")


# --------------------------------------------------------------------------- submissions

@dataclasses.dataclass
class Submission:
    name: str
    source: str                               # the folder or .zip it came from
    files: dict[int, bytes] = dataclasses.field(default_factory=dict)      # step -> its bytes
    refused: dict[int, str] = dataclasses.field(default_factory=dict)      # step -> why not run
    problem: str | None = None                # the whole submission could not be read
    digests: dict[str, str] = dataclasses.field(default_factory=dict)      # path -> sha256, to re-check


def _choose(candidates: dict[int, list[tuple[tuple, str]]]) -> dict[int, str]:
    """The file per step: the one nearest the submission's top, ``steps/step_NN.py`` before a
    ``step_NN.py`` beside it (so a GitHub archive's ``repo-main/steps/`` is found too)."""
    return {n: sorted(c)[0][1] for n, c in candidates.items()}


def _rank(parts: tuple[str, ...]) -> tuple:
    if len(parts) > 1 and parts[-2] == "steps":
        return (len(parts) - 2, 0)
    return (len(parts) - 1, 1)


def read_folder(path: Path, name: str) -> Submission:
    sub = Submission(name, str(path))
    candidates: dict[int, list] = {}
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        rel = Path(dirpath).relative_to(path)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and depth < 3)
        for fn in filenames:
            m = STEP_RE.match(fn)
            if m:
                parts = rel.parts + (fn,)
                candidates.setdefault(int(m.group(1)), []).append((_rank(parts), str(Path(dirpath) / fn)))
    for step, file in _choose(candidates).items():
        p = Path(file)
        if p.is_symlink():
            sub.refused[step] = f"{p.relative_to(path)} is a symbolic link; submit the file itself"
            continue
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_STEP_FILE + 1)
        except OSError as exc:
            sub.refused[step] = f"cannot read {p.relative_to(path)}: {exc.strerror}"
            continue
        if len(data) > MAX_STEP_FILE:
            sub.refused[step] = f"{p.relative_to(path)} is larger than {MAX_STEP_FILE >> 20} MiB"
            continue
        sub.files[step] = data
        sub.digests[str(p)] = hashlib.sha256(data).hexdigest()
    return sub


def read_zip(path: Path, name: str) -> Submission:
    sub = Submission(name, str(path))
    try:
        with zipfile.ZipFile(path) as zf:
            candidates: dict[int, list] = {}
            infos = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if not parts or any(p in SKIP_DIRS or p.startswith(".") or p == ".." for p in parts[:-1]):
                    continue
                m = STEP_RE.match(parts[-1])
                if m and len(parts) <= 4:
                    candidates.setdefault(int(m.group(1)), []).append((_rank(parts), info.filename))
                    infos[info.filename] = info
            for step, member in _choose(candidates).items():
                info = infos[member]
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    sub.refused[step] = f"{member} is a symbolic link; submit the file itself"
                    continue
                if info.file_size > MAX_STEP_FILE:
                    sub.refused[step] = f"{member} is larger than {MAX_STEP_FILE >> 20} MiB"
                    continue
                with zf.open(info) as f:
                    data = f.read(MAX_STEP_FILE + 1)
                if len(data) > MAX_STEP_FILE:
                    sub.refused[step] = f"{member} is larger than {MAX_STEP_FILE >> 20} MiB"
                    continue
                sub.files[step] = data
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError) as exc:
        sub.files.clear()
        sub.problem = f"could not read {path.name}: {exc}"
    try:
        sub.digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        pass
    return sub


def collect(directory: Path) -> tuple[list[Submission], list[str]]:
    """Every student in DIR, read into memory now (later changes on disk change nothing)."""
    subs, ignored, names = [], [], set()
    for entry in sorted(directory.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir():
            name = entry.name
            reader = read_folder
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            name = entry.stem
            reader = read_zip
        else:
            ignored.append(entry.name)
            continue
        if name in names:
            name = entry.name
        names.add(name)
        subs.append(reader(entry, name))
    return subs, ignored


# --------------------------------------------------------------------------- the course

def course_files(root: Path = ROOT) -> dict[str, bytes]:
    """The checking code, tests and solutions, in memory: workspaces are written from this copy."""
    files: dict[str, bytes] = {}
    for p in sorted((root / "gpt2course").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            files[str(p.relative_to(root))] = p.read_bytes()
    for pattern in ("tests/conftest.py", "tests/test_step_*.py", "solutions/__init__.py",
                    "solutions/solution_*.py", "steps/__init__.py"):
        for p in sorted(root.glob(pattern)):
            files[str(p.relative_to(root))] = p.read_bytes()
    return files


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def write_workspace(ws: Path, course: dict[str, bytes], step: int, student_file: bytes) -> None:
    for rel, data in course.items():
        m = re.match(r"solutions/solution_(\d+)\.py$", rel)
        if m and int(m.group(1)) >= step:
            continue  # the graded step's solution and later ones stay hidden
        dest = ws / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (ws / "steps").mkdir(exist_ok=True)
    (ws / "steps" / "__init__.py").touch()
    (ws / "solutions").mkdir(exist_ok=True)
    (ws / "solutions" / "__init__.py").touch()
    (ws / "steps" / f"step_{step:02d}.py").write_bytes(student_file)
    (ws / "tmp").mkdir()


def needed_checkpoints(course: dict[str, bytes], steps: list[int]) -> list[str]:
    from gpt2course import checkpoints

    names = {"small"}
    for n in steps:
        text = course.get(f"tests/test_step_{n:02d}.py", b"").decode("utf-8", "replace")
        names.update(name for name in checkpoints.CONFIGS if f'"{name}"' in text)
    return sorted(names)


# Python modules of MAX that compile Mojo source on their first import and keep the result
# inside the installed package (site-packages/max/_kv_cache_ops/__mojocache__/*.so). A check
# may not write there (nor may the student code it runs), so on a fresh install the grader
# imports them once itself, before any check starts. Found with
# `grep -rl mojo.importer site-packages/max`.
MAX_SELF_COMPILING = ("max._kv_cache_ops",)


def prepare_max() -> None:
    """Lets MAX finish its first-import work (compiling modules into its own package) here,
    outside the sandbox, so that no check is blamed for a write MAX itself makes."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    result = subprocess.run([sys.executable, "-c", code, *MAX_SELF_COMPILING], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:  # not fatal: the checks then say what failed
        print(f"warning: importing {', '.join(MAX_SELF_COMPILING)} failed:\n{result.stderr[-2000:]}",
              file=sys.stderr, flush=True)


def prepare_checkpoints(names: list[str]) -> None:
    """Builds the seeded checkpoints the checks read, once, here: the checks may not write them."""
    from gpt2course import checkpoints

    missing = [n for n in names
               if not (checkpoints.cache_dir() / "checkpoints" / f"seeded-{n}-{checkpoints.SEED}"
                       / "model.safetensors").exists()]
    if not missing:
        return
    print(f"building the seeded checkpoint(s) the checks read: {', '.join(missing)} (once) ...",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-c", "import sys\nfrom gpt2course import checkpoints\n"
                    "for n in sys.argv[1:]:\n    checkpoints.seeded_checkpoint(n)\n", *missing],
                   cwd=ROOT, check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")))


def modular_cache() -> Path:
    """MAX's kernel cache, shared by every check (HOME is left alone so it is found)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "modular"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- running one check

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

    def as_dict(self) -> dict:
        return {"status": self.status, "check": self.check, "message": self.message, "hint": self.hint,
                "passed_checks": self.passed_checks, "total_checks": self.total_checks,
                "seconds": round(self.seconds, 2), "log": self.log}


@dataclasses.dataclass
class Options:
    timeout: float = DEFAULT_TIMEOUT
    memory: int = 8 << 30
    max_output: int = 64 << 20
    device: str | None = None
    landlock: bool = True
    extra_writable: tuple[str, ...] = ()
    keep: bool = False


class Runner:
    """Starts checks, watches them, and ends them with everything they started."""

    def __init__(self, course: dict[str, bytes], work: Path, logs: Path, opts: Options):
        self.course, self.work, self.logs, self.opts = course, work, logs, opts
        self.lock = threading.Lock()
        self.active: set[int] = set()
        self.stopping = False
        self.cache = modular_cache()
        self.counter = 0
        try:
            import psutil  # a dependency of max
        except ImportError:  # pragma: no cover
            psutil = None
        self.psutil = psutil
        _become_subreaper()

    def run(self, sub: Submission, step: int) -> Verdict:
        t0 = time.monotonic()
        with self.lock:
            self.counter += 1
            job = self.work / f"{self.counter:04d}-{_safe(sub.name)}-{step:02d}"
        job.mkdir()
        ws = job / "ws"
        ws.mkdir()
        try:
            write_workspace(ws, self.course, step, sub.files[step])
            verdict = self._run(sub, step, job, ws)
        finally:
            if not self.opts.keep:
                shutil.rmtree(job, ignore_errors=True)
        verdict.seconds = time.monotonic() - t0
        return verdict

    def command(self, step: int, ws: Path, report: Path) -> list[str]:
        from gpt2course.cli import check_command

        check = check_command(step, "steps", self.opts.device, str(report))
        real = str(ROOT / "tests" / f"test_step_{step:02d}.py")
        check = [str(ws / "tests" / f"test_step_{step:02d}.py") if a == real else a for a in check]
        writable = [str(ws), *self.shared_writable(), os.devnull]
        sandbox = [sys.executable, "-m", "gpt2course.integrity", "sandbox", "--memory", str(self.opts.memory)]
        for w in writable:
            sandbox += ["--write", w]
        if not self.opts.landlock:
            sandbox.append("--no-landlock")
        return sandbox + ["--", *check]

    def shared_writable(self) -> list[str]:
        """What every check may write besides its workspace: MAX's kernel cache, /dev/shm
        (multiprocessing's semaphores), the GPU's device files with --device gpu, --allow-write."""
        paths = [str(self.cache), "/dev/shm"]
        if (self.opts.device or "cpu").lower() != "cpu":
            import glob

            paths += sorted(glob.glob("/dev/nvidia*")) + [p for p in ("/dev/dri", "/dev/kfd") if os.path.exists(p)]
        return paths + list(self.opts.extra_writable)

    def env(self, ws: Path) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("GPT2_TARGET", "GPT2_DEVICE", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")
               and not k.startswith("GPT2_GRADE")}
        env.update(PYTHONPATH=str(ws), TMPDIR=str(ws / "tmp"), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONUNBUFFERED="1", GPT2_GRADE="1",
                   GPT2_GRADE_WRITABLE=os.pathsep.join(self.shared_writable()))
        return env

    def _run(self, sub: Submission, step: int, job: Path, ws: Path) -> Verdict:
        report_path = ws / "report.json"
        key = secrets.token_hex(32)
        log_path = job / "output.log"
        reason = None
        with open(log_path, "wb") as log:
            with self.lock:
                if self.stopping:
                    raise KeyboardInterrupt
                proc = subprocess.Popen(self.command(step, ws, report_path), cwd=ws, env=self.env(ws),
                                        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                self.active.add(proc.pid)
            try:
                proc.stdin.write(key.encode() + b"\n")
                proc.stdin.close()
            except OSError:
                pass
            seen: set = set()
            deadline = time.monotonic() + self.opts.timeout
            next_probe = 0.0
            while True:
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if now > deadline:
                    reason = "timeout"
                elif now >= next_probe:
                    next_probe = now + 0.5
                    try:
                        if os.fstat(log.fileno()).st_size > self.opts.max_output:
                            reason = "output"
                    except OSError:
                        pass
                    if reason is None and self._over_memory(proc.pid, seen):
                        reason = "memory"
                if reason:
                    break
            self._kill(proc, seen)
            with self.lock:
                self.active.discard(proc.pid)
            self.sweep()
        rc = proc.returncode
        kept = self._keep_log(log_path, sub.name, step)
        verdict = judge(sub.name, step, key, report_path, rc, reason, kept, self.opts)
        verdict.log = str(self.logs / _safe(sub.name) / f"step_{step:02d}.log")
        return verdict

    def _over_memory(self, pid: int, seen: set) -> bool:
        if self.psutil is None:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") > self.opts.memory
            except (OSError, ValueError, IndexError):
                return False
        try:
            root = self.psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except self.psutil.Error:
            return False
        over = False
        for p in procs:
            seen.add(p)
            try:
                if p.memory_info().rss > self.opts.memory:
                    over = True
            except self.psutil.Error:
                pass
        return over

    def _kill(self, proc: subprocess.Popen, seen: set) -> None:
        """Ends the check's process group and every process it was seen to start."""
        if self.psutil is not None:
            try:
                seen.update(self.psutil.Process(proc.pid).children(recursive=True))
            except self.psutil.Error:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in seen:
            try:
                p.kill()
            except Exception:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def stop(self) -> None:
        """Ctrl-C: start nothing new and kill what runs (each check is its own process group)."""
        with self.lock:
            self.stopping = True
            for pid in list(self.active):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def sweep(self) -> None:
        """Kills and reaps orphans a check left behind (they are re-parented to us, the subreaper)."""
        if self.psutil is None:
            return
        with self.lock:
            try:
                children = self.psutil.Process().children()
            except self.psutil.Error:
                return
            for child in children:
                if child.pid in self.active:
                    continue
                try:
                    child.kill()
                except self.psutil.Error:
                    pass
                try:
                    os.waitpid(child.pid, 0)
                except ChildProcessError:
                    pass

    def _keep_log(self, log_path: Path, student: str, step: int) -> str:
        """The first and last parts of the output (at most LOG_KEEP bytes), saved under --out/logs."""
        size = log_path.stat().st_size
        with open(log_path, "rb") as f:
            if size <= LOG_KEEP:
                data = f.read()
            else:
                head = f.read(LOG_KEEP // 4)
                f.seek(size - (LOG_KEEP - LOG_KEEP // 4))
                tail = f.read()
                data = head + f"\n[... {size - len(head) - len(tail)} bytes cut ...]\n".encode() + tail
        dest = self.logs / _safe(student) / f"step_{step:02d}.log"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return data.decode("utf-8", "replace")


def _become_subreaper() -> None:
    """Orphans of a check (a daemon it forked) come back to this process, which ends them."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except Exception:
            pass


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "_"


def _gib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


def judge(student: str, step: int, key: str, report_path: Path, rc: int | None, reason: str | None,
          output: str, opts: Options) -> Verdict:
    """The verdict of one check, from how it ended and its signed report."""
    v = Verdict(student, step, "error")
    if reason == "timeout":
        v.status, v.message = "timeout", f"did not finish within {opts.timeout:g} s (--timeout)"
        return v
    if reason == "memory":
        v.message = f"ran out of memory: a process went over {_gib(opts.memory)} (--memory)"
        return v
    if reason == "output":
        v.message = f"printed more than {_gib(opts.max_output)} of output"
        return v
    report = None
    try:
        if report_path.is_file() and report_path.stat().st_size <= MAX_REPORT:
            report = json.loads(report_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        report = None
    nn = f"{step:02d}"
    if not isinstance(report, dict) or not isinstance(report.get("steps"), dict) or nn not in report["steps"]:
        if "MemoryError" in output:
            v.message = f"ran out of memory (limit {_gib(opts.memory)}, --memory)"
        elif rc is not None and rc < 0:
            v.message = f"the check process was killed by signal {-rc} before it wrote its report"
        else:
            v.message = (f"the check process ended (exit code {rc}) without writing its report: "
                         "does the file call sys.exit() or os._exit(), or end the process?")
        return v
    if not integrity.signature_ok(key, report):
        v.message = "the report was not written by the checking code (its signature does not match)"
        return v
    grading = report.get("grading") or {}
    problems = grading.get("problems") or []
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        v.message = problems[0] + more
        return v
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
        v.message = f"ran out of memory (limit {_gib(opts.memory)}, --memory)"
        return v
    collected = (grading.get("collected") or {}).get(nn)
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


# --------------------------------------------------------------------------- reports

def parse_steps(text: str | None) -> list[int]:
    if not text:
        return manifest.numbers()
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part.lstrip("s"):
            a, b = part.split("-", 1)
            out.extend(range(manifest.parse_step(a), manifest.parse_step(b) + 1))
        else:
            out.append(manifest.parse_step(part))
    for n in out:
        manifest.step(n)
    return sorted(set(out))


def parse_points(text: str | None, steps: list[int]) -> dict[int, float]:
    points = {n: 1.0 for n in steps}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise SystemExit(f"--points: write it as 07=2,12=3 (got {part!r})")
        step, value = part.split("=", 1)
        n = manifest.parse_step(step)
        try:
            points[n] = float(value)
        except ValueError:
            raise SystemExit(f"--points: {value!r} is not a number") from None
    return {n: points[n] for n in steps}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if not m:
        raise SystemExit(f"not a size: {text!r} (write e.g. 8G or 512M)")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)])


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def build_results(subs: list[Submission], steps: list[int], points: dict[int, float],
                  verdicts: dict[tuple[str, int], Verdict], meta: dict) -> dict:
    maximum = sum(points.values())
    students = {}
    for sub in subs:
        per = {}
        total = 0.0
        for n in steps:
            v = verdicts[(sub.name, n)]
            got = points[n] if v.status == "passed" else 0.0
            total += got
            per[f"{n:02d}"] = dict(v.as_dict(), points=_num(got), max_points=_num(points[n]))
        students[sub.name] = {"source": sub.source, "total": _num(total), "max": _num(maximum), "steps": per}
    counts = {f"{n:02d}": {s: sum(verdicts[(sub.name, n)].status == s for sub in subs) for s in STATUSES}
              for n in steps}
    return dict(meta, steps=[f"{n:02d}" for n in steps], points={f"{n:02d}": _num(p) for n, p in points.items()},
                max=_num(maximum), students=students, per_step=counts)


def write_reports(out: Path, results: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    p = out / "grades.json"
    p.write_text(json.dumps(results, indent=2))
    paths.append(p)

    p = out / "grades.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "step", "title", "status", "points", "max_points", "passed_checks",
                    "total_checks", "seconds", "first_failing_check", "message", "student_total", "student_max"])
        for name, s in results["students"].items():
            for nn, r in s["steps"].items():
                w.writerow([name, nn, manifest.step(int(nn))["title"], r["status"], r["points"], r["max_points"],
                            r["passed_checks"], r["total_checks"], r["seconds"], r["check"] or "",
                            r["message"] or "", s["total"], s["max"]])
    paths.append(p)

    p = out / "summary.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student"] + [f"s{nn}" for nn in results["steps"]] + ["total", "max"])
        for name, s in results["students"].items():
            w.writerow([name] + [s["steps"][nn]["status"] for nn in results["steps"]] + [s["total"], s["max"]])
    paths.append(p)

    p = out / "junit.xml"
    suites = ET.Element("testsuites", name="gpt2-max-course grades", max=str(results["max"]))
    for name, s in results["students"].items():
        rows = s["steps"].values()
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(s["steps"])),
                              failures=str(sum(r["status"] in ("failed", "missing") for r in rows)),
                              errors=str(sum(r["status"] in ("error", "timeout") for r in rows)),
                              skipped="0", time=f"{sum(r['seconds'] for r in rows):.2f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="total", value=str(s["total"]))
        ET.SubElement(props, "property", name="max", value=str(s["max"]))
        for nn, r in s["steps"].items():
            case = ET.SubElement(suite, "testcase", classname=name,
                                 name=f"step {nn} - {manifest.step(int(nn))['title']}", time=f"{r['seconds']:.2f}")
            text = "\n".join(x for x in (r["check"], r["message"], r["hint"] and f"hint: {r['hint']}") if x)
            if r["status"] == "failed":
                ET.SubElement(case, "failure", type="failed", message=_first_line(r["message"])).text = text
            elif r["status"] == "missing":
                ET.SubElement(case, "failure", type="missing", message=r["message"] or "not submitted")
            elif r["status"] in ("error", "timeout"):
                ET.SubElement(case, "error", type=r["status"], message=_first_line(r["message"])).text = text
    ET.indent(suites)
    ET.ElementTree(suites).write(p, encoding="utf-8", xml_declaration=True)
    paths.append(p)
    return paths


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def table(results: dict) -> str:
    steps = results["steps"]
    names = list(results["students"])
    width = max([7] + [len(n) for n in names])
    lines = ["student".ljust(width) + "  " + " ".join(f"{nn:>4}" for nn in steps) + "   total"]
    for name in names:
        s = results["students"][name]
        marks = " ".join(f"{MARKS[s['steps'][nn]['status']]:>4}" for nn in steps)
        lines.append(f"{name.ljust(width)}  {marks}   {_num(s['total'])}/{_num(s['max'])}")
    passing = " ".join(f"{results['per_step'][nn]['passed']:>4}" for nn in steps)
    lines.append("passing".ljust(width) + "  " + passing + f"   of {len(names)}")
    lines.append("ok passed  FAIL failed  ERR error  TIME timeout  - missing")
    return "\n".join(lines)


def details(results: dict, width: int = 150) -> str:
    out = []
    for name, s in results["students"].items():
        for nn, r in s["steps"].items():
            if r["status"] in ("passed", "missing"):
                continue
            what = f"{r['check']}: " if r["check"] else ""
            msg = " ".join(f"{what}{r['message'] or ''}".split())
            line = f"  {name} s{nn} {r['status']}: {msg}"
            out.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(out)


class Progress:
    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()

    def update(self, v: Verdict) -> None:
        with self.lock:
            self.done += 1
            elapsed = time.monotonic() - self.t0
            if self.tty:
                n = 30
                filled = int(n * self.done / max(self.total, 1))
                sys.stderr.write(f"\r[{'#' * filled}{'.' * (n - filled)}] {self.done}/{self.total} checks "
                                 f"{elapsed:5.0f}s  last: {v.student} s{v.step:02d} {v.status:<8}")
                if self.done == self.total:
                    sys.stderr.write("\n")
            else:
                sys.stderr.write(f"[{self.done}/{self.total}] {v.student} s{v.step:02d} {v.status} "
                                 f"({v.seconds:.1f}s)\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- GitHub Classroom

CLASSROOM_WORKFLOW = ROOT / "classroom" / ".github" / "workflows" / "classroom.yml"


def classroom_workflow() -> str:
    """classroom/.github/workflows/classroom.yml, one graded test per step of the manifest.

    Each test runs the learners' own check (`python -m gpt2course check NN`); stderr goes to
    stdout because the command grader fails a test that writes anything to stderr."""
    steps = manifest.numbers()
    lines = [
        "# GitHub Classroom autograding for \"Build GPT-2 from scratch with MAX\": one graded test per",
        "# step, each running the check learners run (`python -m gpt2course check NN`).",
        "# Copy it to .github/workflows/classroom.yml in the assignment's template repository",
        "# (classroom/README.md). Generated from gpt2course/course.toml by",
        "# `python -m gpt2course.grade classroom-workflow`; tests/test_grade.py keeps the two in step.",
        "name: Autograding Tests",
        "\"on\":",
        "  - push",
        "  - repository_dispatch",
        "permissions:",
        "  checks: write",
        "  actions: read",
        "  contents: read",
        "jobs:",
        "  run-autograding-tests:",
        "    runs-on: ubuntu-latest",
        "    if: github.actor != 'github-classroom[bot]'",
        "    timeout-minutes: 180",
        "    steps:",
        "      - name: Checkout code",
        "        uses: actions/checkout@v4",
        "      - name: Set up Python 3.11",
        "        uses: actions/setup-python@v5",
        "        with:",
        "          python-version: \"3.11\"",
        "          cache: pip",
        "          cache-dependency-path: requirements.txt",
        "      - name: Cache MAX's compiled kernels and the seeded checkpoints",
        "        uses: actions/cache@v4",
        "        with:",
        "          path: |",
        "            ~/.cache/modular",
        "            ~/.cache/gpt2-max-course",
        "          key: gpt2-max-${{ runner.os }}-${{ hashFiles('requirements.txt') }}-${{ github.sha }}",
        "          restore-keys: gpt2-max-${{ runner.os }}-${{ hashFiles('requirements.txt') }}-",
        "      - name: Install the pinned packages (torch from its CPU-only index)",
        "        run: |",
        "          python -m pip install --upgrade pip",
        "          python -m pip install \"torch==$(sed -n 's/^torch==//p' requirements.txt)\" --index-url https://download.pytorch.org/whl/cpu",
        "          python -m pip install -r requirements.txt",
    ]
    runners = []
    for n in steps:
        ident = f"step-{n:02d}"
        runners.append(ident)
        title = manifest.step(n)["title"].replace('"', "'")
        lines += [
            f"      - name: step {n:02d} - {title}",
            f"        id: {ident}",
            "        uses: classroom-resources/autograding-command-grader@v1",
            "        with:",
            f"          test-name: \"step {n:02d} - {title}\"",
            f"          command: bash -c \"python -m gpt2course check {n:02d} 2>&1\"",
            f"          timeout: {10 if n <= 6 else 30}",
            "          max-score: 1",
        ]
    lines += [
        "      - name: Autograding Reporter",
        "        uses: classroom-resources/autograding-grading-reporter@v1",
        "        env:",
    ]
    lines += [f"          {r.upper()}_RESULTS: \"${{{{steps.{r}.outputs.result}}}}\"" for r in runners]
    lines += ["        with:", f"          runners: {','.join(runners)}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command

def grade(directory: Path, steps: list[int], points: dict[int, float], out: Path, jobs: int,
          opts: Options) -> dict:
    t0 = time.monotonic()
    course = course_files()
    course_digest = digests(course)
    subs, ignored = collect(directory)
    prepare_max()
    prepare_checkpoints(needed_checkpoints(course, steps))
    landlock = integrity.landlock_abi() if opts.landlock else 0
    verdicts: dict[tuple[str, int], Verdict] = {}
    todo = []
    for sub in subs:
        for n in steps:
            if sub.problem:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "error", message=sub.problem)
            elif n in sub.refused:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "error", message=sub.refused[n])
            elif n not in sub.files:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "missing",
                                                  message=f"steps/step_{n:02d}.py not submitted")
            else:
                todo.append((sub, n))
    todo.sort(key=lambda job: -job[1])  # later steps take longest: start them first
    print(f"grading {len(subs)} students x {len(steps)} steps ({len(todo)} checks to run, "
          f"{jobs} at a time; timeout {opts.timeout:g}s, memory {_gib(opts.memory)}, "
          f"write fence: {'Landlock ABI ' + str(landlock) if landlock else 'audit hook only'})",
          file=sys.stderr, flush=True)
    if ignored:
        print(f"ignored (not a folder or .zip): {', '.join(ignored)}", file=sys.stderr)
    logs = out / "logs"
    work = Path(tempfile.mkdtemp(prefix="gpt2grade-"))
    os.chmod(work, 0o700)
    progress = Progress(len(todo))
    runner = Runner(course, work, logs, opts)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = {pool.submit(runner.run, sub, n): (sub, n) for sub, n in todo}
        try:
            for fut in concurrent.futures.as_completed(futures):
                sub, n = futures[fut]
                try:
                    v = fut.result()
                except Exception as exc:  # a grader bug must not lose the other students
                    v = Verdict(sub.name, n, "error", message=f"the grader failed on this check: "
                                f"{type(exc).__name__}: {exc}")
                verdicts[(sub.name, n)] = v
                progress.update(v)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            runner.stop()
            raise
    finally:
        pool.shutdown(wait=True)
        runner.sweep()
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    warnings = []
    changed = [k for k, d in digests(course_files()).items() if course_digest.get(k) != d]
    changed += [k for k in course_digest if not (ROOT / k).exists()]
    if changed:
        warnings.append("course files changed on disk while grading (the checks used the copy read at the start; "
                        "if nobody edited them, a submission may have written there): " + ", ".join(sorted(changed)))
    for sub in subs:
        for path, d in sub.digests.items():
            try:
                now = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                now = None
            if now != d:
                warnings.append(f"{path} changed while grading (graded: the copy read at the start)")
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "directory": str(directory), "device": opts.device or "cpu",
            "options": {"timeout_s": opts.timeout, "memory_bytes": opts.memory, "jobs": jobs,
                        "write_fence": f"landlock ABI {landlock}" if landlock else "audit hook"},
            "seconds": round(time.monotonic() - t0, 1), "warnings": warnings, "ignored": ignored}
    return build_results(subs, steps, points, verdicts, meta)


def cmd_grade(args) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"grade: {directory} is not a folder (give the folder holding one folder or .zip per student)",
              file=sys.stderr)
        return 2
    steps = parse_steps(args.steps)
    points = parse_points(args.points, steps)
    opts = Options(timeout=args.timeout, memory=parse_size(args.memory), max_output=parse_size(args.max_output),
                   device=args.device, landlock=not args.no_sandbox,
                   extra_writable=tuple(os.path.abspath(p) for p in args.allow_write), keep=args.keep)
    out = Path(args.out)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        results = grade(directory.resolve(), steps, points, out, args.jobs or os.cpu_count() or 1, opts)
    except KeyboardInterrupt:
        print("\ngrading interrupted: the running checks were stopped; no reports written", file=sys.stderr)
        return 130
    paths = write_reports(out, results)
    print(table(results))
    text = details(results)
    if text:
        print("\nnot passing:\n" + text)
    for w in results["warnings"]:
        print(f"WARNING: {w}")
    print(f"\n{len(results['students'])} students graded in {results['seconds']:g}s; reports: "
          + ", ".join(str(p) for p in paths) + f", logs in {out / 'logs'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("grade", help="grade a class: every step of every student, in isolation",
                       description="Grades DIR: one folder (or .zip) per student holding steps/step_NN.py files.")
    p.add_argument("dir", help="the folder holding one folder or .zip per student")
    p.add_argument("--steps", help="steps to grade, e.g. 01,02,03 or 1-6 (default: all)")
    p.add_argument("--points", help="points per step, e.g. 07=2,12=3 (default: 1 each)")
    p.add_argument("--out", default="grades", help="where the reports go (default: grades/)")
    p.add_argument("--jobs", type=int, default=0, help="checks at a time (default: the number of CPU cores)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one check may take (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--memory", default=DEFAULT_MEMORY, help=f"memory per check process (default {DEFAULT_MEMORY})")
    p.add_argument("--max-output", default=DEFAULT_MAX_OUTPUT,
                   help=f"output one check may print before it is stopped (default {DEFAULT_MAX_OUTPUT})")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--allow-write", action="append", default=[], metavar="PATH",
                   help="another folder checks may write to (repeatable)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="do not apply the OS-level (Landlock) write fence")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspaces (for debugging)")
    p.set_defaults(func=cmd_grade)


if __name__ == "__main__":
    if sys.argv[1:] == ["classroom-workflow"]:
        CLASSROOM_WORKFLOW.parent.mkdir(parents=True, exist_ok=True)
        CLASSROOM_WORKFLOW.write_text(classroom_workflow())
        print(f"wrote {CLASSROOM_WORKFLOW.relative_to(ROOT)}")
    else:
        print("usage: python -m gpt2course.grade classroom-workflow  (grading itself: python -m gpt2course grade DIR)")
        sys.exit(2)
