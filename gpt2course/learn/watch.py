"""`watch`: re-check a step every time its file is saved.

Linux file events (inotify, through ctypes) where they work; where they would miss a save
(network drives, WSL's Windows drives, macOS) it says so and polls the file instead. Each
check is ``gpt2course.check.command.run_check``, so its verdict is remembered for
``progress``. Standard library only.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import sys
import time
from pathlib import Path

from gpt2course import course
from gpt2course.check.command import add_target_device, run_check
from gpt2course.course import display
from gpt2course.learn.progress import one_line, step_arg

POLL_INTERVAL = 0.5


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
        return PollWatcher(path), f"watching {display(path)} by polling every {POLL_INTERVAL:g}s (--poll given)"
    reason = file_events_problem(path, **probe)
    if reason is None:
        try:
            w = InotifyWatcher(path)
            return w, f"watching {display(path)} with file events (inotify)"
        except (OSError, AttributeError) as exc:
            reason = f"inotify is unavailable: {exc}"
    w = PollWatcher(path)
    return w, f"watching {display(path)} by polling every {POLL_INTERVAL:g}s (file events unavailable here: {reason})"


def verdict_line(step: int, result: dict) -> str:
    n = f"{step:02d}"
    if result["status"] == "passed":
        nxt = [s for s in course.numbers() if s > step]
        more = f" Next: step {nxt[0]:02d} ({course.command('watch', nxt[0])})." if nxt else ""
        return f"VERDICT: step {n} passes — all {result['total']} checks match Hugging Face.{more}"
    if result["status"] == "error":
        return (f"VERDICT: the check of step {n} could not run (see above); "
                f"{course.command('doctor')} checks your setup.")
    first = result.get("first_failure") or {}
    msg = one_line((first.get("message") or "").splitlines()[0] if first.get("message") else "", 120)
    return (f"VERDICT: step {n} not passing yet ({result['passed']}/{result['total']} checks): "
            f"{first.get('check', '?')}: {msg}")


def cmd_watch(args) -> int:
    target = args.target
    step = step_arg(args, target)
    path = course.step_file(step, target)
    n = f"{step:02d}"
    if not path.parent.is_dir():
        raise SystemExit(f"cannot watch step {n}: the folder {display(path.parent)} does not exist")
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
            result = run_check(step, target, args.device)
            print(verdict_line(step, result), flush=True)
            return result

        # The watcher is set up before this first run, so a save during it is not missed.
        run(f"checking step {n} ({course.step(step)['title']}) ...")
        while True:
            print(f"Waiting for you to save {display(path)} (Ctrl-C to stop) ...", flush=True)
            while not watcher.wait():
                pass
            result = run(f"{display(path)} saved: checking step {n} again ...")
            if args.once_after_change:
                return 0 if result["status"] == "passed" else 1
    except KeyboardInterrupt:
        print(f"\nStopped watching {display(path)}.")
        return 0
    finally:
        if watcher is not None:
            watcher.close()


def register(sub) -> None:
    p = sub.add_parser("watch", help="re-check a step every time its file is saved")
    p.add_argument("step", nargs="?", help="s07, 07 or 7 (default: the first step not passing yet)")
    add_target_device(p)
    p.add_argument("--poll", action="store_true",
                   help=f"look at the file every {POLL_INTERVAL:g}s instead of using file events")
    p.add_argument("--once-after-change", action="store_true",
                   help="exit after the first re-check that a save triggered (exit status: the check's)")
    p.set_defaults(func=cmd_watch)
