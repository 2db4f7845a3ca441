"""Landlock: what a process (and every child it starts afterwards) may read, write and signal.

The kernel enforces it; it cannot be undone. Where the kernel lacks a feature, ``confine``'s
lines say which rule does not hold. A Landlock-restricted process may not change its mounts,
so mounts (``gpt2course.grade.isolation``) come first.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Iterable

# --- Landlock's interface (include/uapi/linux/landlock.h) -----------------------------------
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, and the ABI that introduced each one (ABI 1 unless said).
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
# Named pipes, sockets and device files: no check makes one (a pipe in place of a lock file
# would make every later MAX call wait on it), so a confined worker may make none anywhere.
_FS_MAKE_SPECIAL = (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11)
_FS_REFER = 1 << 13  # ABI 2: link or rename a file across folders
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5: ioctl on a device file opened after the restriction
_FS_READ = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE
# The rights that make sense on a file (a rule on a file with any other is refused).
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV

# Network rights (ABI 4): TCP only; UDP and Unix sockets have none.
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_ABI_NET = 4

# Scopes (ABI 6): no connecting to abstract Unix sockets, nor signalling, outside the domain.
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_ABI_SCOPE = 6

class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """Landlock's ABI version on this kernel (0: not available)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                                  ctypes.c_uint32(_CREATE_RULESET_VERSION))
        return max(int(version), 0)
    except Exception:
        return 0


def _write_rights(abi: int, *, ioctl: bool) -> int:
    """The write rights this ABI can handle (IOCTL_DEV only when ``ioctl``)."""
    rights = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if ioctl and abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _apply_ruleset(abi: int, handled_fs: int, handled_net: int, scoped: int,
                   rules: Iterable[tuple[str, int]]) -> list[str]:
    """The one Landlock ruleset builder: handles ``handled_fs``/``handled_net``/``scoped``,
    allows each ``(path, rights)`` beneath ``path`` (a file gets only the rights a file can
    have; a missing path is skipped), then restricts this process and its future children.
    Returns the paths skipped as missing."""
    libc = _libc()
    attr = _RulesetAttr(handled_fs, handled_net, scoped)
    size = 24 if abi >= _ABI_SCOPE else (16 if abi >= _ABI_NET else 8)  # the struct this ABI knows
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    missing = []
    try:
        for path, rights in rules:
            if not _add_path_rule(libc, fd, path, rights & handled_fs):
                missing.append(path)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return missing


def _add_path_rule(libc, ruleset_fd: int, path: str, rights: int) -> bool:
    """Adds "``rights`` beneath ``path``" to the ruleset; False if ``path`` does not exist."""
    if not os.path.exists(path):
        return False
    if not os.path.isdir(path):
        rights &= _FS_FILE_RIGHTS
    if not rights:
        return True
    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(rights, pfd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset_fd),
                        ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(pfd)
    return True


def restrict_writes(paths) -> int:
    """Landlock: from now on this process and its children write only beneath ``paths`` (reads
    are not restricted), and, with ABI >= 6, signal and reach abstract Unix sockets only within.

    Returns the ABI used (0: Landlock unavailable, nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    handled = _write_rights(abi, ioctl=False)
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= _ABI_SCOPE else 0
    _apply_ruleset(abi, handled, 0, scoped, [(p, handled) for p in paths])
    return abi


def restrict(read, write) -> list[str]:
    """A graded check's rules, for its judge and every process it starts: write only beneath
    ``write``; with ``read``, read only beneath ``read`` and ``write``; signals and abstract
    Unix sockets only within (ABI >= 6). Returns what holds, one line."""
    abi = landlock_abi()
    if abi < 1:
        return ["check: NOT fenced: this kernel has no Landlock"]
    if not read:
        restrict_writes(write)
        return [f"check: writes only beneath its workspace, MAX's cache and /dev/shm (Landlock ABI {abi})"]
    writes = _write_rights(abi, ioctl=True)
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= _ABI_SCOPE else 0
    rules = [(p, _FS_READ) for p in read] + [(p, _FS_READ | writes) for p in write]
    if abi >= 5:
        rules.append(("/dev", _FS_IOCTL_DEV))
    _apply_ruleset(abi, _FS_READ | writes, 0, scoped, rules)
    return [f"check: its processes read only its workspace, the course's libraries and MAX's cache, "
            f"and write only its workspace, MAX's cache and /dev/shm (Landlock ABI {abi})"]


def confine(read, write, *, network: bool = False, listable=()) -> list[str]:
    """Landlock, for this process and every child it starts afterwards: it may read (and
    execute) only beneath the paths in ``read``, read and write only beneath those in
    ``write``, list (not read) the folders in ``listable`` and what is beneath them (the import
    system lists a package's folder to find its modules); with ``network=False`` no TCP bind or
    connect (ABI >= 4); signals and abstract Unix sockets only within (ABI >= 6). ioctl on
    device files stays allowed (beneath /dev). Missing paths are skipped.

    It may make no named pipe, socket or device file anywhere.

    Returns one plain-English line per rule saying whether it now holds."""
    abi = landlock_abi()
    if abi < 1:
        return ["reads: NOT restricted: this kernel has no Landlock",
                "writes: NOT restricted: this kernel has no Landlock",
                "TCP: NOT restricted: this kernel has no Landlock",
                "signals: NOT restricted: this kernel has no Landlock"]
    writes = _write_rights(abi, ioctl=True)
    handled_net = 0 if network or abi < _ABI_NET else _NET_BIND_TCP | _NET_CONNECT_TCP
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= _ABI_SCOPE else 0
    rules = ([(p, _FS_READ) for p in read] + [(p, _FS_READ | (writes & ~_FS_MAKE_SPECIAL)) for p in write]
             + [(p, _FS_READ_DIR) for p in listable])
    if abi >= 5:  # denying ioctl on devices breaks terminals and GPUs; opening them is ruled above
        rules.append(("/dev", _FS_IOCTL_DEV))
    before = _child_pids()
    missing = _apply_ruleset(abi, _FS_READ | writes, handled_net, scoped, rules)
    return _confine_lines(abi, network, len(missing), before)


def _child_pids() -> list[int]:
    """This process's children: started before ``confine``, they are not confined."""
    pids = []
    for task in glob.glob("/proc/self/task/*/children"):
        try:
            with open(task) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(pids)


def _confine_lines(abi: int, network: bool, missing: int, before: list[int]) -> list[str]:
    """What ``confine`` made hold, in words."""
    skipped = f" ({missing} missing path(s) skipped)" if missing else ""
    lines = [f"reads: only beneath the allowed paths (Landlock ABI {abi}){skipped}",
             f"writes: only beneath the writable paths, and no named pipe, socket or device file "
             f"(Landlock ABI {abi})"]
    if network:
        lines.append("TCP: NOT restricted: network=True")
    elif abi >= _ABI_NET:
        lines.append("TCP: no bind or connect (Landlock)")
    else:
        lines.append(f"TCP: NOT restricted: Landlock ABI {abi} has no network rules (needs {_ABI_NET})")
    lines.append("UDP and Unix-socket connects: NOT restricted by Landlock (the worker's network namespace covers UDP)")
    if abi >= _ABI_SCOPE:
        lines.append("signals: only to its own processes (Landlock scope)")
        lines.append("abstract Unix sockets: only its own (Landlock scope)")
    else:
        lines.append(f"signals: NOT restricted: Landlock ABI {abi} has no scopes (needs {_ABI_SCOPE})")
    if before:  # e.g. MAX's compile pool (a forkserver), if an eager op ran before confine
        lines.append(f"child processes started before: NOT confined: pid(s) {', '.join(map(str, before))}")
    return lines
