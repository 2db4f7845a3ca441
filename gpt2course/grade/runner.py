"""Running one check: its workspace, its sandboxed process, its cgroup, its limits, its log."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gpt2course.grade import allowed
from gpt2course.grade.cgroup import CheckGroups
from gpt2course.grade.submissions import Submission
from gpt2course.max_install import child_env
from gpt2course.grade.verdict import Verdict, judge
from gpt2course.grade.workspace import modular_cache, write_workspace

# A step-10 or -11 check that compiles its model from scratch (a student whose code differs
# from the solution) took up to 15 min here with both cores busy; seconds when cached.
DEFAULT_TIMEOUT = 1200.0
# RLIMIT_DATA per process (and an RSS watchdog). Step 03 passes with 1 GiB and fails with
# 512 MiB; step 13 runs the learner's model at GPT-2 124M shapes (two copies of 500 MB of
# weights plus a MAX compile) and steps 10-11 load those weights, hence the headroom.
DEFAULT_MEMORY = "8G"
DEFAULT_MAX_OUTPUT = "64M"
LOG_KEEP = 1 << 20           # bytes of each check's output kept (head and tail)
# A check whose processes used no CPU for this long waits on something that will not come (a
# lock, a pipe nobody writes): stopped as an error that says what it waited on. MAX's compiles,
# the judge's Hugging Face runs and a learner's code all use the CPU while they work.
STALL_SECONDS = 120.0
STALL_WORK = 0.02  # "no CPU": under 2% of one core over that time (idle threads still tick)


@dataclasses.dataclass
class Options:
    timeout: float = DEFAULT_TIMEOUT
    memory: int = 8 << 30
    max_output: int = 64 << 20
    device: str | None = None
    landlock: bool = True
    extra_writable: tuple[str, ...] = ()
    keep: bool = False
    namespaces: bool = True
    stall: float = STALL_SECONDS
    warm: bool = True


class Runner:
    """Starts checks, watches them, and ends them with everything they started."""

    def __init__(self, course: dict[str, bytes], work: Path, logs: Path, opts: Options):
        self.course, self.work, self.logs, self.opts = course, work, logs, opts
        self.lock = threading.Lock()
        self.active: set[int] = set()
        self.stopping = False
        self.cache = modular_cache()
        self.groups = CheckGroups()
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

    def command(self, step: int, ws: Path, report: Path, job: Path | None = None,
                group=None) -> list[str]:
        from gpt2course.check.command import check_command

        check = check_command(step, "steps", self.opts.device, str(report), root=ws)
        check += ["-p", "gpt2course.grade.plugin"]
        check += [f"--grade-writable={w}" for w in self.shared_writable()]
        writable = [str(ws), *self.shared_writable(), os.devnull]
        sandbox = [sys.executable, "-m", "gpt2course.grade.sandbox", "sandbox", "--memory", str(self.opts.memory)]
        for w in writable:
            sandbox += ["--write", w]
        for r in allowed.judge_reads(ws):
            sandbox += ["--read", r]
        if group is not None:
            sandbox += ["--cgroup", str(group.path)]
        if job is not None:
            sandbox += ["--cache", str(self.cache), "--layer", str(job / "cache-layer")]
        if not self.opts.namespaces:
            sandbox.append("--no-namespaces")
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
        env = {k: v for k, v in child_env().items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
        env.update(PYTHONPATH=str(ws), TMPDIR=str(ws / "tmp"), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONUNBUFFERED="1")
        return env

    def _run(self, sub: Submission, step: int, job: Path, ws: Path) -> Verdict:
        report_path = ws / "report.json"
        key = secrets.token_hex(32)
        log_path = job / "output.log"
        group = self.groups.new(job.name)
        with open(log_path, "wb") as log:
            with self.lock:
                if self.stopping:
                    raise KeyboardInterrupt
                proc = subprocess.Popen(self.command(step, ws, report_path, job, group), cwd=ws,
                                        env=self.env(ws), stdin=subprocess.PIPE, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                self.active.add(proc.pid)
            try:
                proc.stdin.write(key.encode() + b"\n")
                proc.stdin.close()
            except OSError:
                pass
            seen: set = set()
            reason, detail = self._watch(proc, log, seen, group)
            if group is not None:
                group.kill()
            self._kill(proc, seen)
            with self.lock:
                self.active.discard(proc.pid)
            self.sweep()
        rc = proc.returncode
        kept = self._keep_log(log_path, sub.name, step)
        verdict = judge(sub.name, step, key, report_path, rc, reason, kept, self.opts, stalled=detail)
        verdict.log = str(self.logs / _safe(sub.name) / f"step_{step:02d}.log")
        return verdict

    def _watch(self, proc: subprocess.Popen, log, seen: set, group=None) -> tuple[str | None, str | None]:
        """Waits for the check to end; returns why it was stopped early (timeout, output,
        memory, stalled: with what it waited on), or None if it ended by itself. ``seen``
        collects the processes it started."""
        deadline = time.monotonic() + self.opts.timeout
        next_probe = 0.0
        cpu, busy_at = None, time.monotonic()
        while True:
            try:
                proc.wait(timeout=0.25)
                return None, None
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now > deadline:
                return "timeout", None
            if now >= next_probe:
                next_probe = now + 0.5
                try:
                    if os.fstat(log.fileno()).st_size > self.opts.max_output:
                        return "output", None
                except OSError:
                    pass
                if self._over_memory(proc.pid, seen):
                    return "memory", None
                used = self._cpu(proc.pid, seen, group)
                if used is None or cpu is None or used - cpu > STALL_WORK * self.opts.stall:
                    cpu, busy_at = used, now  # working: at least STALL_WORK of a core since busy_at
                elif now - busy_at > self.opts.stall:
                    return "stalled", _waits(proc.pid, group, self.psutil)

    def _cpu(self, pid: int, seen: set, group) -> float | None:
        """CPU seconds the check's processes have used (its cgroup's, or the live tree's)."""
        if group is not None:
            usec = group.cpu_usec()
            if usec is not None:
                return usec / 1e6
        if self.psutil is None:
            return None
        total = 0.0
        for p in list(seen):
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except self.psutil.Error:
                pass
        return round(total, 2)

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

    def close(self) -> None:
        """After the last check: orphans reaped, the grader's cgroup folder removed."""
        self.sweep()
        self.groups.close()

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


def _waits(pid: int, group, psutil) -> str:
    """What a stalled check's processes wait in, from /proc: the kernel function (wchan) and,
    for a process blocked opening or locking a file, which file."""
    pids = group.pids() if group is not None else []
    if not pids and psutil is not None:
        try:
            pids = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            pids = [pid]
    found = []
    for p in pids[:8]:
        try:
            wchan = open(f"/proc/{p}/wchan").read().strip() or "?"
            call = open(f"/proc/{p}/syscall").read().split()
        except OSError:
            continue
        what = f"pid {p} waits in {wchan}"
        if call and call[0].isdigit() and len(call) > 2:
            try:  # a file it has open that is not a plain file (a pipe or fifo put in a cache)
                for fd in os.listdir(f"/proc/{p}/fd"):
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                    if target.startswith("/") and not os.path.isfile(target) and "/dev/" not in target:
                        what += f" (holds {target})"
                        break
            except OSError:
                pass
        found.append(what)
    return "; ".join(found) or "no process could be inspected"


def _become_subreaper() -> None:
    """Orphans of a check (a daemon it forked) come back to this process, which ends them."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except Exception:
            pass


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "_"
