"""The sandbox the grader starts each check under:
``python -m gpt2course.grade.sandbox [--write DIR]... [--memory BYTES] [--no-landlock] -- CMD...``

Resource limits (no core files; RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more
address space than they use), then, where the kernel has Landlock, an OS-level rule that the
whole process tree may write only beneath the ``--write`` folders and may not signal
processes outside it; then it execs the check. ``landlock-abi`` prints the kernel's ABI.
"""

from __future__ import annotations

import ctypes
import os
import sys

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and arm64
_PR_SET_NO_NEW_PRIVS = 38
_FS_WRITE_FILE, _FS_REMOVE_DIR, _FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """Landlock's ABI version on this kernel (0: not available)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        version = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                               ctypes.c_uint32(1))
        return max(int(version), 0)
    except Exception:
        return 0


def restrict_writes(paths) -> int:
    """Landlock: from now on this process and its children write only beneath ``paths``.

    Returns the ABI used (0: Landlock unavailable, nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    handled = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(attr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in paths:
            if os.path.isdir(path):
                allowed = handled
            elif os.path.exists(path):  # a file (/dev/null): only the rights a file can have
                allowed = handled & (_FS_WRITE_FILE | _FS_TRUNCATE)
            else:
                continue
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed, pfd)
                if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(fd), ctypes.c_int(1),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(pfd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return abi


def sandbox_main(argv: list[str]) -> int:
    """``sandbox [--write DIR]... [--memory BYTES] [--no-landlock] -- COMMAND...``: limit, fence, exec."""
    import argparse
    import resource  # Unix only: imported here so learners' checks never need it

    if "--" not in argv:
        print("usage: python -m gpt2course.grade.sandbox [--write DIR]... [--memory BYTES] -- CMD...",
              file=sys.stderr)
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m gpt2course.grade.sandbox")
    p.add_argument("--write", action="append", default=[])
    p.add_argument("--memory", type=int, default=0)
    p.add_argument("--no-landlock", action="store_true")
    opts = p.parse_args(argv[:cut])
    command = argv[cut + 1:]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if opts.memory > 0:
        # RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more address space than they use.
        resource.setrlimit(resource.RLIMIT_DATA, (opts.memory, opts.memory))
    if not opts.no_landlock:
        restrict_writes(opts.write)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sandbox":
        sys.exit(sandbox_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "landlock-abi":
        print(landlock_abi())
        sys.exit(0)
    print("usage: python -m gpt2course.grade.sandbox|landlock-abi ...", file=sys.stderr)
    sys.exit(2)
