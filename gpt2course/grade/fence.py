"""The fence of a graded check's worker: an audit hook (PEP 578; it cannot be removed once
added) that refuses Python-level writes outside the worker's scratch folder (and MAX's cache),
reads outside what it may read, and signals to processes outside the check's session, and
reports each to ``report`` the moment it happens (the worker passes a writer to the judge's
alert pipe: the record is in the judge before the refused call returns, where the code under
check cannot erase it). Native code and child processes are not seen by it: the Landlock rules
(gpt2course.grade.landlock) refuse them where the kernel has Landlock.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import threading

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # event -> indexes of (path, dir_fd) pairs among its arguments
    "os.remove": [(0, 1)], "os.rmdir": [(0, 1)], "os.mkdir": [(0, 2)], "os.rename": [(0, 2), (1, 3)],
    "os.chmod": [(0, 2)], "os.chown": [(0, 3)], "os.link": [(1, 3)], "os.symlink": [(1, 2)],
    "os.utime": [(0, 3)], "os.truncate": [(0, None)], "os.mkfifo": [(0, 2)], "os.mknod": [(0, 3)],
    "shutil.rmtree": [(0, None)], "shutil.copyfile": [(1, None)], "shutil.copytree": [(1, None)],
    "shutil.move": [(1, None)], "os.chflags": [(0, None)], "os.lchflags": [(0, None)],
}


# Symbols that reach the kernel around Python's own calls; no check needs them through ctypes.
_RAW_SYMBOLS = {"syscall", "bpf", "ptrace", "process_vm_readv", "process_vm_writev", "prlimit", "prlimit64",
                "setns", "unshare", "mount", "keyctl", "add_key", "request_key", "perf_event_open"}
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")


class WriteFence:
    """Audit hook: Python-level writes outside ``roots``, and signals to processes outside this
    process's session (the grader, other students' checks), raise PermissionError and are recorded.
    With ``read_roots`` (a worker's), opening a file for reading outside them and ``roots`` is
    refused and recorded too: Landlock refuses it as well where the kernel has it, but only
    this hook can say who tried."""

    def __init__(self, roots, read_roots=None, report=None, guarded=()):
        self.roots = [os.path.realpath(r) for r in roots]
        self.guarded = [os.path.realpath(r) for r in guarded]  # writable by native code only (MAX's cache)
        self.read_roots = None if read_roots is None else [os.path.realpath(r) for r in read_roots]
        self.report = report if report is not None else (lambda text: None)
        self._busy = threading.local()

    @staticmethod
    def _beneath(path, roots) -> bool:
        real = os.path.realpath(path)
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def allowed(self, path) -> bool:
        return self._beneath(path, self.roots)

    def _read(self, args) -> None:
        resolved = self._resolve(args[0], None) if args else None
        if resolved is None or self._beneath(resolved, self.read_roots) or self.allowed(resolved):
            return
        if "__pycache__" in resolved.split(os.sep):
            return  # the import system looking for bytecode: not the student's doing (the OS decides)
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            self.report(f"read outside its sandbox: {resolved}")
        finally:
            self._busy.on = False
        raise PermissionError(errno.EACCES, "grading: reads outside the sandbox are refused", resolved)

    @staticmethod
    def _resolve(path, dir_fd):
        if isinstance(path, int):
            return None
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
        if not os.path.isabs(path) and isinstance(dir_fd, int) and dir_fd >= 0:
            try:
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                pass
        return os.path.abspath(path)

    def _signal(self, event, args):
        try:
            target, sig = int(args[0]), int(args[1])
        except (IndexError, TypeError, ValueError):
            return
        if sig == 0 or target in (0, os.getpid()):
            return
        try:
            if os.getsid(abs(target)) == os.getsid(0):
                return
        except OSError:
            return  # no such process: the call fails by itself
        self.report(f"signal outside the check: {event} {target} (signal {sig})")
        raise PermissionError(errno.EPERM, "grading: signalling processes outside the check is refused")

    def _refuse(self, what: str, exc: type = PermissionError):
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            self.report(what)
        finally:
            self._busy.on = False
        raise exc(errno.EPERM, f"grading: refused: {what}")

    def _other_process(self, args) -> None:
        """A read of another process's /proc files (its memory map, environment, command line)."""
        resolved = self._resolve(args[0], None) if args else None
        m = _PROC_PID.match(resolved or "")
        if m and int(m.group(1)) != os.getpid():
            self._refuse(f"read another process's /proc files: {resolved}")

    def __call__(self, event, args):
        if event in ("os.kill", "os.killpg"):
            return self._signal(event, args)
        if event == "resource.prlimit" and args and args[0] not in (0, os.getpid()):
            self._refuse(f"resource limits of another process: prlimit({args[0]}, ...)")
        if event == "ctypes.dlsym" and len(args) > 1 and str(args[1]) in _RAW_SYMBOLS and self.read_roots is not None:
            self._refuse(f"a raw system call through ctypes: {args[1]}")
        if event == "open":
            if self.read_roots is not None:
                self._other_process(args)
            if len(args) < 3 or not isinstance(args[2], int) or not args[2] & _WRITE_FLAGS:
                if self.read_roots is not None:
                    self._read(args)
                return
            targets = [(args[0], None)]
        elif event in _PATH_EVENTS:
            targets = [(args[i] if i < len(args) else None,
                        args[j] if j is not None and j < len(args) else None) for i, j in _PATH_EVENTS[event]]
        else:
            return
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            for path, dir_fd in targets:
                resolved = self._resolve(path, dir_fd)
                if resolved is None or (event == "os.mkdir" and os.path.isdir(resolved)):
                    continue  # mkdir(exist_ok=True) of a folder that is there: changes nothing
                if self.guarded and self._beneath(resolved, self.guarded):
                    self.report(f"changed MAX's cache (only MAX's own compiler writes there): {event} {resolved}")
                    raise PermissionError(errno.EACCES, "grading: MAX's cache is MAX's", resolved)
                if self.allowed(resolved):
                    continue
                if "__pycache__" in resolved.split(os.sep):
                    # bytecode caching: importlib ignores the error; not the student's doing
                    raise PermissionError(errno.EACCES, "grading: writes outside the workspace are refused",
                                          resolved)
                self.report(f"write outside its workspace: {event} {resolved}")
                raise PermissionError(errno.EACCES, "grading: writes outside the workspace are refused",
                                      resolved)
        finally:
            self._busy.on = False


def install_write_fence(roots, read_roots=None, report=None, guarded=()) -> WriteFence:
    fence = WriteFence(roots, read_roots, report, guarded)
    sys.addaudithook(fence)
    return fence
