"""docs/recipes/grade.slurm, run as shipped on a one-node Slurm cluster this test starts.

The module's fixture starts munged, slurmctld and slurmd on this machine (Debian's slurm-wlm
22.05 and munge; .ci/run installs them), each with its files in a private temporary folder
and a slurm.conf written there (SLURM_CONF points every command at it), on free ports of
127.0.0.1. Where they are not installed or do not start, the tests that need them skip and say
why. They are stopped at the end whatever happens: the jobs cancelled, the daemons killed,
and any process still carrying the cluster's mark killed, then looked for again.

In a fresh copy of the course (the files the grader reads, the recipe, and .venv as a link to
this checkout's), the fixture class (test_shard.py's: good, wrong, syntax, empty) is graded
once unsharded, then by the commands of the recipe's header, run by bash as written there:
the array (`sbatch --parsable docs/recipes/grade.slurm submissions`, with --array=1-2 and a
size for one core given on sbatch's command line, which override the #SBATCH lines, and the
grade options after the class folder) and the merge as a job that depends on it
(--dependency=afterok:$jid). Only steps 01-02 are graded: no MAX compile.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from gpt2course.course import ROOT
from gpt2course.grade import shard as sharding
from gpt2course.grade.reports import WRITERS
from gpt2course.grade.workspace import course_files

from test_grade import make_class
from test_shard import normalised

RECIPE = ROOT / "docs" / "recipes" / "grade.slurm"
WORKFLOW = ROOT / "docs" / "recipes" / "github-actions-grade.yml"
# The grade options every run gets (after the class folder, as the recipe's header says).
GRADE_OPTIONS = ("--steps", "01-02", "--timeout", "900", "--memory", "2G", "--points", "02=2")
# sbatch's own options, which override the recipe's #SBATCH lines: two shards, one core each.
SBATCH_OPTIONS = ("--array=1-2", "--cpus-per-task=1", "--mem=1G")
SUBMIT = "sbatch --parsable docs/recipes/grade.slurm submissions"
DAEMONS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
MARK = "GPT2COURSE_SLURM_TEST"  # in the environment of every process the cluster starts
NODE, PARTITION = "gradenode", "grade"


def header_commands() -> str:
    """The shell lines of the recipe's header: from 'From the course folder' to the next '#'."""
    lines = RECIPE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "From the course folder" in line) + 1
    assert lines[start] == "#", "grade.slurm: a line '#' after 'From the course folder' opens the commands"
    block = []
    for line in lines[start + 1:]:
        if line == "#":
            break
        assert line.startswith("#   "), f"grade.slurm: the header's commands are indented '#   ': {line!r}"
        block.append(line[4:])
    return "\n".join(block)


def test_the_docs_show_the_recipes_commands():
    """docs/grading.md shows the header's commands, and the recipe takes N from its array."""
    commands = header_commands()
    assert SUBMIT in commands and "--dependency=afterok:$jid" in commands
    assert "grade merge grades-shards/shard-* --out grades" in commands
    assert f"```bash\n{commands}\n```" in (ROOT / "docs" / "grading.md").read_text()
    body = RECIPE.read_text()
    assert not re.search(r"^N=\d", body, re.M), "N comes from the array (SLURM_ARRAY_TASK_MAX), not a number"
    assert "#SBATCH --array=1-" in body and '--shard "$K/$N"' in body and '--out "grades-shards/shard-$K"' in body


# ------------------------------------------------------------------ the cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 30) -> str:
    try:
        return f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"--- {path.name}: (none)"


def _marked(marks: list[str]) -> list[int]:
    """Processes, other than this one, with the cluster's mark in their environment or their
    working folder in one of the cluster's folders (a child that dropped its environment)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if f"{MARK}={marks[0]}".encode() in env or any(cwd == m or cwd.startswith(m + "/") for m in marks):
            found.append(int(d.name))
    return found


def _children() -> dict[int, str]:
    """This process's children: pid -> state (Z: a zombie, waiting to be reaped)."""
    found = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == os.getpid():
            found[int(d.name)] = state
    return found


def _subreaper(on: bool) -> None:
    """Makes this process the reaper of its orphaned descendants (prctl PR_SET_CHILD_SUBREAPER):
    slurmd's slurmstepd and what it starts detach themselves, and where PID 1 reaps nothing (a
    container's) they would otherwise stay as zombies."""
    ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0)


class Cluster:
    """munged, slurmctld and slurmd of a one-node cluster, with their files in ``base``."""

    def __init__(self, base: Path, course: Path):
        self.base, self.course = base, course
        self.procs: dict[str, subprocess.Popen] = {}
        self.children_before = set(_children())  # not the cluster's: never reaped here
        sbin = os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "")])
        self.tools = {name: shutil.which(name, path=sbin) for name in DAEMONS}
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SLURM_")}
        self.env.update(SLURM_CONF=str(base / "slurm.conf"), **{MARK: str(base)})

    def run(self, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([self.tools.get(args[0]) or args[0], *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=timeout, **kw)

    def logs(self) -> str:
        return "\n".join(_tail(p) for p in sorted(self.base.glob("*.log")))

    def _daemon(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.out.log", "w")
        p = subprocess.Popen([self.tools[name], *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = p
        return p

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [f"{name} exited ({p.returncode})" for name, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = dead[0] if dead else f"not within {timeout:.0f}s"
                pytest.skip(f"could not start Slurm: {what}: {why}\n{self.logs()}")
            time.sleep(0.5)

    def start(self) -> None:
        missing = [name for name, path in self.tools.items() if path is None]
        if missing:
            pytest.skip(f"Slurm or munge is not installed (no {', '.join(missing)}): "
                        "apt-get install slurm-wlm munge (.ci/run does)")
        _subreaper(True)
        # munged wants its socket's folder open to all, its key private to root
        self.base.chmod(0o755)
        private = self.base / "private"
        private.mkdir(mode=0o700)
        key = private / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = self.base / "munge.socket"
        self._daemon("munged", "--foreground", f"--key-file={key}", f"--socket={sock}",
                     f"--pid-file={self.base / 'munged.pid'}", f"--log-file={self.base / 'munged.log'}",
                     f"--seed-file={private / 'munged.seed'}")
        self._wait("munged", lambda: sock.exists() and self.run("munge", "-n", "-S", str(sock)).returncode == 0,
                   timeout=30)

        host = socket.gethostname().split(".")[0]
        probe = self.run("slurmd", "-C")
        hw = re.search(r"^NodeName=\S+ (.*)$", probe.stdout, re.M)
        if probe.returncode != 0 or not hw:
            pytest.skip(f"could not start Slurm: slurmd -C said {probe.stdout + probe.stderr!r}")
        for sub in ("state", "spool"):
            (self.base / sub).mkdir()
        (self.base / "slurm.conf").write_text(f"""\
ClusterName=gradetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={self.base / 'state'}
SlurmdSpoolDir={self.base / 'spool'}
SlurmctldPidFile={self.base / 'slurmctld.pid'}
SlurmdPidFile={self.base / 'slurmd.pid'}
SlurmctldLogFile={self.base / 'slurmctld.log'}
SlurmdLogFile={self.base / 'slurmd.log'}
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 {hw.group(1)}
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
        self._daemon("slurmctld", "-D", "-c")
        self._wait("slurmctld", lambda: self.run("scontrol", "ping").stdout.count("is UP") == 1)
        self._daemon("slurmd", "-D", "-N", NODE)
        self._wait(f"slurmd (node {NODE} idle)",
                   lambda: self.run("sinfo", "-h", "-n", NODE, "-o", "%t").stdout.strip() == "idle")

    def stop(self) -> None:
        """Cancel every job, stop the daemons, kill whatever of the cluster is left; raises if a
        process of it outlives SIGKILL."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", f"--partition={PARTITION}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "-h").stdout.strip():
                time.sleep(1)
        for p in reversed(self.procs.values()):  # slurmd, slurmctld, munged
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(15)
        marks = [str(self.base), str(self.course)]
        for pid in _marked(marks):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while True:  # reap the orphans this process adopted (they are all the cluster's)
            for pid, state in _children().items():
                if state == "Z" and pid not in self.children_before:
                    os.waitpid(pid, os.WNOHANG)
            left = _marked(marks) + [p for p in _children() if p not in self.children_before]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        _subreaper(False)
        assert not left, f"processes of the test's Slurm cluster outlived SIGKILL: {left}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    course = tmp_path_factory.mktemp("slurm-course") / "course"
    # Not pytest's tmp folder: munged needs every folder above its socket open to all, and a
    # socket's path must be short.
    c = Cluster(Path(tempfile.mkdtemp(prefix="gpt2-slurm-")), course)
    try:
        c.start()
        yield c
    finally:
        try:
            c.stop()
        finally:
            shutil.rmtree(c.base, ignore_errors=True)


# ------------------------------------------------------------------ the recipe, run

def copy_course(dest: Path) -> Path:
    """What the grader reads (workspace.course_files), the pins, the recipes, .venv as a link."""
    for rel, data in course_files(ROOT).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    shutil.copy2(ROOT / "requirements.txt", dest)
    shutil.copytree(ROOT / "docs" / "recipes", dest / "docs" / "recipes")
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def jobs(cluster: Cluster, jid: str) -> list[dict]:
    """scontrol's record of a job, one dict per array task."""
    r = cluster.run("scontrol", "show", "job", "-o", jid)
    assert r.returncode == 0, r.stderr
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in r.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def slurm_graded(cluster):
    course = copy_course(cluster.course)
    klass = make_class(course / "submissions", names={"good", "wrong", "syntax"})
    (klass / "empty").mkdir()

    # One unsharded run, to the --out the merge will have, so that the log paths can be equal.
    t0 = time.monotonic()
    whole = subprocess.run([".venv/bin/python", "-m", "gpt2course", "grade", "submissions", *GRADE_OPTIONS,
                            "--jobs", "1", "--out", "grades"], cwd=course, env=cluster.env,
                           capture_output=True, text=True, timeout=1200)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    (course / "grades").rename(course / "whole")
    unsharded_s = time.monotonic() - t0

    commands = header_commands()
    assert commands.count(SUBMIT) == 1
    submit = f"sbatch --parsable {' '.join(SBATCH_OPTIONS)} docs/recipes/grade.slurm submissions " \
             + shlex.join(GRADE_OPTIONS)
    script = "set -euo pipefail\n" + commands.replace(SUBMIT, submit) + '\necho "array job $jid"\n'
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", script], cwd=course, env=cluster.env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + cluster.logs()
    array = re.search(r"^array job (\d+)$", r.stdout, re.M).group(1)
    merge = re.search(r"^Submitted batch job (\d+)$", r.stdout, re.M).group(1)

    def diagnosis() -> str:
        return "\n".join([cluster.run("squeue", "-o", "%i %T %r").stdout,
                          *(_tail(p) for p in sorted((course / "grades-shards").glob("*.out"))), cluster.logs()])

    deadline = time.monotonic() + 1500
    while True:
        queue = cluster.run("squeue", "-h", "-j", f"{array},{merge}", "-o", "%i %T %r").stdout
        if not queue.strip():
            break
        assert "DependencyNeverSatisfied" not in queue, f"an array task failed, the merge will never run\n{diagnosis()}"
        assert time.monotonic() < deadline, f"the jobs did not end in 25 min\n{diagnosis()}"
        time.sleep(2)
    slurm_s = time.monotonic() - t0
    tasks, merged = jobs(cluster, array), jobs(cluster, merge)
    for job in tasks + merged:
        assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), f"{job['JobId']}: {job['JobState']}\n{diagnosis()}"
    print(f"unsharded {unsharded_s:.0f}s; the array and the merge on Slurm {slurm_s:.0f}s")
    return {"course": course, "tasks": tasks, "merge": merged[0]}


def test_the_recipe_on_slurm_equals_one_unsharded_run(slurm_graded):
    course = slurm_graded["course"]
    for name in WRITERS:
        merged, whole = (course / "grades" / name).read_text(), (course / "whole" / name).read_text()
        assert normalised(name, merged) == normalised(name, whole), name
    data = json.loads((course / "grades" / "grades.json").read_text())
    assert data["students"]["good"]["total"] == 3 and data["max"] == 3  # --points 02=2 reached the tasks
    assert data["options"]["jobs"] == 1  # --cpus-per-task=1 on sbatch's command line became --jobs 1
    for s in data["students"].values():
        for r in s["steps"].values():
            assert (r["log"] is None) == (r["status"] == "missing")
            if r["log"]:
                assert (course / r["log"]).is_file()


def test_each_array_task_graded_its_shard(slurm_graded):
    course, tasks = slurm_graded["course"], slurm_graded["tasks"]
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["1", "2"]
    assert {t["NumCPUs"] for t in tasks} == {"1"} and {t["MinMemoryNode"] for t in tasks} == {"1G"}
    # the merge waited for the array: it started after the last task ended
    assert slurm_graded["merge"]["StartTime"] >= max(t["EndTime"] for t in tasks)
    assert slurm_graded["merge"]["Dependency"] == "(null)"  # met, so cleared
    for k in (1, 2):
        man = json.loads((course / "grades-shards" / f"shard-{k}" / sharding.MANIFEST).read_text())
        assert (man["shard"], man["of"], man["steps"]) == (k, 2, ["01", "02"])
        assert f"this is shard {k}/2" in (course / "grades-shards" / f"slurm-{tasks[0]['ArrayJobId']}_{k}.out").read_text()


def test_the_github_recipes_merge_step_on_these_shards(slurm_graded, tmp_path):
    """The GitHub workflow's merge step, run as written on the Slurm tasks' shards laid out as
    download-artifact lays them (shards/grades-shard-K/), writes the same reports."""
    yaml = pytest.importorskip("yaml")
    course = slurm_graded["course"]
    wf = yaml.safe_load(WORKFLOW.read_text())
    run = [s["run"] for s in wf["jobs"]["merge"]["steps"] if "grade merge" in s.get("run", "")]
    assert len(run) == 1
    work = tmp_path / "ci"
    work.mkdir()
    for k in (1, 2):
        shutil.copytree(course / "grades-shards" / f"shard-{k}", work / "shards" / f"grades-shard-{k}")
    # setup-python's python is first on PATH; the checkout is the working folder, here on PYTHONPATH
    env = dict(os.environ, PYTHONPATH=str(course), PATH=f"{course / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", "-c", run[0]], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in WRITERS:
        ci, slurm = (work / "grades" / name).read_text(), (course / "grades" / name).read_text()
        assert normalised(name, ci) == normalised(name, slurm), name
