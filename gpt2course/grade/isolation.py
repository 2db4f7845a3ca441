"""Namespaces, capabilities and a seccomp filter: what a graded check and its worker cannot reach.

Two layers, each entered by a trusted process before it runs anything untrusted:

``check_namespaces`` (the sandbox wrapper, ``gpt2course.grade.sandbox``, before it execs the
judge): a user namespace of its own (the grader's uid mapped to root inside: no capability
outside it), a mount namespace, a PID namespace and an IPC namespace, then a fork; the child is
the namespace's first process (if it ends, the kernel kills every process left in it: nothing
outlives the check), with a fresh ``/proc`` (only the check's own processes), a private
``/dev/shm``, and MAX's cache as an overlay: the shared cache read-only below, this check's
own layer above, discarded with the check, so no check writes what another reads.

``python -m gpt2course.grade.isolation worker -- CMD...`` (the judge starts its worker
through it): an empty network namespace and an IPC namespace of its own, no capabilities
(bounding set emptied, ``SECBIT_NOROOT``, so none come back on exec), ``no_new_privs``, and a
seccomp filter that refuses what a check never needs (``REFUSED``: bpf, perf_event_open,
ptrace, process_vm_*, keyrings, mounts, namespaces, module loading, ... and ``prlimit`` on
another process); then it execs CMD with ``--held LINE`` for each line of what now holds. The
worker stays in the check's PID namespace, whose /proc is its own: a nested one would see that
/proc with other numbers than its own (``/proc/{os.getpid()}`` would be the judge).

Where the kernel refuses a layer, the lines say so and grading goes on with what holds.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import struct
import sys

# include/uapi/linux/sched.h
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x00000080
_NAMESPACE_FLAGS = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                    | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)
# include/uapi/linux/mount.h
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
# include/uapi/linux/prctl.h, securebits.h
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
# NOROOT, NO_SETUID_FIXUP and NO_CAP_AMBIENT_RAISE set, KEEP_CAPS clear: each locked
SECBITS = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _err() -> str:
    return os.strerror(ctypes.get_errno())


# --- namespaces ---------------------------------------------------------------------------
def _unshare(libc, flags: int) -> str | None:
    """None if done, else why not."""
    return None if libc.unshare(ctypes.c_int(flags)) == 0 else _err()


def _map_self(uid: int, gid: int) -> None:
    """This process's user namespace: root inside is ``uid``/``gid`` outside (no other id)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _enter(libc, flags: int) -> tuple[bool, str]:
    """unshare(``flags``) in a user namespace of its own (the caller's ids mapped to root
    inside), or, for root where user namespaces are refused, without one."""
    uid, gid = os.geteuid(), os.getegid()
    why = _unshare(libc, flags | CLONE_NEWUSER)
    if why is None:
        _map_self(uid, gid)
        return True, (f"user: its own user namespace (uid {uid} outside mapped to root inside: "
                      "no capability outside it)")
    if os.geteuid() == 0:
        why2 = _unshare(libc, flags)
        if why2 is None:
            return True, f"user: NOT its own user namespace ({why}); namespaces made as root"
        why = f"{why}; {why2}"
    return False, f"namespaces: NOT made: unshare failed ({why})"


def _become_first_process() -> None:
    """Forks: the child goes on, as the first process of the new PID namespace, and dies with
    its parent; the parent waits and ends as the child ended (exit status or signal)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.read(r, 1) != b"x":  # the parent died before the death signal was set
            os._exit(1)
        os.close(r)
        return
    os.close(r)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: os.kill(pid, signal.SIGKILL))
    os.write(w, b"x")
    os.close(w)
    os.closerange(3, 1 << 16)  # the child's pipes are the child's: their end must mean its end
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _mount(libc, source, target, fstype, flags: int, data: str | None) -> str | None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    ok = libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0
    return None if ok else _err()


def check_namespaces(cache: str | None, layer: str | None) -> list[str]:
    """The check's namespaces (see the module's docstring). ``cache``: MAX's shared cache;
    ``layer``: a folder of this check's for the overlay's upper and work folders. Returns
    what holds, one line each; in the child (the caller goes on there)."""
    if not sys.platform.startswith("linux"):
        return ["namespaces: NOT made: Linux only"]
    libc = _libc()
    made, user = _enter(libc, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
    if not made:
        return [user, "processes: NOT separated from other checks (no PID namespace)",
                "MAX's cache: shared and writable by the check (no mount namespace)"]
    _become_first_process()
    lines = [user]
    why = _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    if why is None:
        why = _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    lines.append("processes: its own PID namespace; /proc shows only the check's processes, and "
                 "when the check ends every process it started is killed" if why is None else
                 f"processes: its own PID namespace (every process killed when the check ends); /proc "
                 f"NOT remounted ({why}): it lists other processes")
    why = _mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=50%")
    lines.append("/dev/shm: its own" if why is None else f"/dev/shm: NOT its own ({why})")
    lines.append("System V IPC: its own namespace")
    lines.append(overlay_cache(libc, cache, layer))
    return lines


def overlay_cache(libc, cache: str | None, layer: str | None) -> str:
    """MAX's shared cache, read-only beneath this check's own layer (in this mount namespace)."""
    if not cache or not layer:
        return "MAX's cache: shared and writable (no layer asked for)"
    upper, work = os.path.join(layer, "upper"), os.path.join(layer, "work")
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    why = _mount(libc, "overlay", cache, "overlay", 0, f"lowerdir={cache},upperdir={upper},workdir={work}")
    if why is None:
        return ("MAX's cache: the shared cache read-only, under a layer of the check's own "
                "(its compiles and any change it makes are discarded with it)")
    return f"MAX's cache: shared and writable: NOT layered ({why})"


# --- capabilities -------------------------------------------------------------------------
def drop_capabilities() -> str:
    """No capability now or after exec: the bounding set emptied, ambient cleared, root's
    exec-time capabilities refused (SECBIT_NOROOT, locked), the sets zeroed."""
    libc = _libc()
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except (OSError, ValueError):
        last = 40
    failed = []
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if libc.prctl(PR_SET_SECUREBITS, SECBITS, 0, 0, 0) != 0:
        failed.append(f"securebits ({_err()})")
    for cap in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            failed.append(f"bounding set ({_err()})")
            break
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                  # effective, permitted, inheritable: all 0
    if libc.syscall(ctypes.c_long(_SYSCALLS["capset"]), header, data) != 0:
        failed.append(f"capset ({_err()})")
    if failed:
        return "capabilities: NOT all dropped: " + ", ".join(failed)
    return "capabilities: none, and none on exec (bounding set empty, SECBIT_NOROOT)"


# --- seccomp --------------------------------------------------------------------------------
# What no check needs, refused with EPERM: loading kernel code or programs, watching or
# writing other processes, keyrings, mounts and namespaces, the clock, the machine itself.
REFUSED = ("bpf", "perf_event_open", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
           "pidfd_getfd", "keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root",
           "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
           "unshare", "setns", "chroot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
           "delete_module", "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm", "userfaultfd",
           "io_uring_setup", "io_uring_enter", "io_uring_register", "open_by_handle_at",
           "name_to_handle_at", "syslog", "quotactl", "settimeofday", "clock_settime", "clock_adjtime",
           "adjtimex", "vhangup", "lookup_dcookie")
# Syscall numbers (read from <sys/syscall.h> on x86_64 and <asm-generic/unistd.h> for aarch64;
# tests/test_sandbox.py compares the table with this machine's headers where they are).
_TABLES = {
    "x86_64": {"bpf": 321, "perf_event_open": 298, "ptrace": 101, "process_vm_readv": 310,
               "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "keyctl": 250, "add_key": 248,
               "request_key": 249, "mount": 165, "umount2": 166, "pivot_root": 155, "move_mount": 429,
               "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
               "mount_setattr": 442, "unshare": 272, "setns": 308, "chroot": 161, "kexec_load": 246,
               "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
               "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "iopl": 172, "ioperm": 173,
               "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
               "open_by_handle_at": 304, "name_to_handle_at": 303, "syslog": 103, "quotactl": 179,
               "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
               "vhangup": 153, "lookup_dcookie": 212, "prlimit64": 302, "clone": 56, "clone3": 435,
               "capset": 126},
    "aarch64": {"bpf": 280, "perf_event_open": 241, "ptrace": 117, "process_vm_readv": 270,
                "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "keyctl": 219, "add_key": 217,
                "request_key": 218, "mount": 40, "umount2": 39, "pivot_root": 41, "move_mount": 429,
                "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
                "mount_setattr": 442, "unshare": 97, "setns": 268, "chroot": 51, "kexec_load": 104,
                "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
                "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89, "userfaultfd": 282,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                "open_by_handle_at": 265, "name_to_handle_at": 264, "syslog": 116, "quotactl": 60,
                "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
                "vhangup": 58, "lookup_dcookie": 18, "prlimit64": 261, "clone": 220, "clone3": 435,
                "capset": 91},
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SYSCALLS = _TABLES.get(platform.machine(), _TABLES["x86_64"])

# BPF (include/uapi/linux/filter.h, seccomp.h)
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_NR, _ARCH, _ARG0_LO, _ARG0_HI = 0, 4, 16, 20  # offsets in struct seccomp_data (little-endian)


def seccomp_program(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The filter, as BPF instructions (code, jt, jf, k): the wrong architecture (a 32-bit
    call on x86_64) kills; ``REFUSED`` and new namespaces in clone get EPERM; clone3 gets
    ENOSYS (the C library then uses clone, whose flags can be read); prlimit only on itself."""
    machine = machine or platform.machine()
    table = _TABLES[machine]
    prog: list = []  # (code, jt_label | int, jf_label | int, k) with labels resolved below

    def op(code, k=0, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    op(_LD_W_ABS, _ARCH)
    op(_JEQ, _AUDIT_ARCH[machine], jt=1)
    op(_RET, _RET_KILL_PROCESS)
    op(_LD_W_ABS, _NR)
    if machine == "x86_64":  # x32 calls (nr | 0x40000000): none needed
        op(_JGE, 0x40000000, jf=1)
        op(_RET, _RET_ERRNO | errno.EPERM)
    for name in REFUSED:
        if name in table:
            op(_JEQ, table[name], jf=1)
            op(_RET, _RET_ERRNO | errno.EPERM)
    op(_JEQ, table["clone3"], jf=1)
    op(_RET, _RET_ERRNO | errno.ENOSYS)
    op(_JEQ, table["clone"], jf=3)
    op(_LD_W_ABS, _ARG0_LO)                      # clone's flags
    op(_JSET, _NAMESPACE_FLAGS & ~CLONE_NEWTIME, jf=5)  # no new namespace: allow (5 ahead)
    op(_RET, _RET_ERRNO | errno.EPERM)
    op(_JEQ, table["prlimit64"], jf=3)
    op(_LD_W_ABS, _ARG0_LO)                      # prlimit64(pid, ...): pid 0 is itself
    op(_JEQ, 0, jt=2, jf=0)                      # lo == 0: check hi
    op(_RET, _RET_ERRNO | errno.EPERM)
    op(_RET, _RET_ALLOW)
    op(_LD_W_ABS, _ARG0_HI)
    op(_JEQ, 0, jt=1)
    op(_RET, _RET_ERRNO | errno.EPERM)
    op(_RET, _RET_ALLOW)
    return [tuple(i) for i in prog]


def install_seccomp() -> str:
    """The filter on this process and every thread and child it has afterwards."""
    machine = platform.machine()
    if machine not in _TABLES:
        return f"seccomp: NOT applied: no syscall table for {machine}"
    prog = seccomp_program(machine)
    filters = (ctypes.c_ubyte * (8 * len(prog)))()
    for i, (code, jt, jf, k) in enumerate(prog):
        struct.pack_into("<HBBI", filters, 8 * i, code, jt, jf, k)

    class _Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Fprog(len(prog), ctypes.cast(filters, ctypes.c_void_p))
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"seccomp: NOT applied: no_new_privs refused ({_err()})"
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"seccomp: NOT applied ({_err()})"
    return (f"seccomp: {len([n for n in REFUSED if n in _TABLES[machine]])} system calls refused "
            "(bpf, perf_event_open, ptrace, process_vm_*, keyrings, mounts, namespaces, modules, ...); "
            "prlimit only on itself")


# --- the worker's launcher ------------------------------------------------------------------
def worker_launch(command: list[str]) -> int:
    """``worker -- CMD...``: a network and an IPC namespace of the worker's own, no capability,
    no_new_privs, the seccomp filter; then exec CMD with what holds as ``--held`` lines."""
    lines = []
    libc = _libc()
    why = _unshare(libc, CLONE_NEWNET | CLONE_NEWIPC)
    if why is not None:  # not in a namespace where this process holds CAP_SYS_ADMIN: its own
        made, user = _enter(libc, CLONE_NEWNET | CLONE_NEWIPC)
        why = None if made else user
        if made:
            lines.append(user)
    if why is None:
        lines.append("network: its own empty network namespace (no interfaces but a down loopback)")
    else:
        lines.append(f"network: NOT a namespace of its own ({why})")
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    lines.append(drop_capabilities())
    lines.append(install_seccomp())
    held = [a for line in lines for a in ("--held", line)]
    os.execv(command[0], command + held)
    return 127


def protect_from_workers() -> None:
    """A judge (or the grader): not dumpable, so a process without CAP_SYS_PTRACE over it
    (every worker) cannot read its /proc/PID/environ, maps or memory."""
    if sys.platform.startswith("linux"):
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if len(argv) >= 3 and argv[0] == "worker" and argv[1] == "--":
        sys.exit(worker_launch(argv[2:]))
    print("usage: python -m gpt2course.grade.isolation worker -- CMD...", file=sys.stderr)
    sys.exit(2)
