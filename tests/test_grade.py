"""`python -m gpt2course grade`: a class of fixture submissions, good, wrong, broken and hostile.

One grading run (steps 01-03, two checks at a time) is shared by the module; a second, tiny
one grades the student who loops forever with a short --timeout, at the same time. The
fixtures live in tests/fixtures/class/ (its README lists what each student does); the run
grades a copy, to which it adds an empty folder, two .zip files and a symbolic link.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from gpt2course import course, max_install, skeleton
from gpt2course.course import ROOT
from gpt2course.grade import classroom, command as grade, runner, signing, submissions
from gpt2course.grade import workspace as grade_workspace
from gpt2course.grade.fence import WriteFence
from gpt2course.grade.verdict import judge

FIXTURES = ROOT / "tests" / "fixtures" / "class"
MARK = "# VANDALISED" + " by tests/fixtures/class/vandal"  # split: this file must not match
STEPS = ("01", "02", "03")

EXPECTED = {
    "good": ("passed", "passed", "passed"),
    "wrong": ("failed", "passed", "missing"),
    "empty": ("missing", "missing", "missing"),
    "syntax": ("failed", "missing", "missing"),
    "badimport": ("failed", "missing", "missing"),
    "raises": ("failed", "missing", "missing"),
    "hog": ("error", "missing", "missing"),
    "noisy": ("passed", "missing", "missing"),
    "vandal": ("error", "missing", "missing"),
    "quitter": ("failed", "failed", "failed"),      # its code ends the worker, not the check
    "patcher": ("error", "error", "missing"),       # pytest and the checking code: refused imports
    "swapper": ("error", "missing", "missing"),
    "rewriter": ("error", "missing", "missing"),
    "peeker": ("error", "missing", "missing"),
    "forger": ("error", "missing", "missing"),      # finds no key; its reads of the judge's /proc refused
    "snoop": ("error", "missing", "missing"),       # the hidden solution, another student's file
    "torcher": ("missing", "missing", "error"),     # torch computes LayerNorm: refused
    "crasher": ("failed", "missing", "missing"),    # a segfault through ctypes
    "parrot": ("missing", "missing", "failed"),     # outputs precomputed for the public checkpoint
    "zoe": ("passed", "missing", "missing"),        # zoe.zip, GitHub's archive layout
    "broken": ("error", "error", "error"),          # broken.zip is not a zip
    "linker": ("error", "missing", "missing"),      # steps/step_01.py is a symbolic link
    # Students who aim at the others, the grader and the machine (issue: no student touches another)
    "limiter": ("missing", "missing", "error"),     # prlimit on the other checks and the grader
    "lingerer": ("missing", "missing", "error"),    # a helper that outlives its check to do the same
    "cacher": ("missing", "missing", "error"),      # a named pipe for MAX's lock, garbage in its cache
    "shouter": ("failed", "missing", "missing"),    # an error message of surrogates and escapes
    "eraser": ("error", "missing", "missing"),      # erases the record of what was refused
    "prober": ("error", "missing", "missing"),      # bpf(), other processes' /proc files
}
# Graded in their own run, steps 12-13: a worker that writes its own requests to the judge.
EXPECTED_JUDGEHACK = ("error", "error")

# (student, step): substrings the verdict's message must contain
MESSAGES = {
    ("wrong", "01"): ["layer_norm_epsilon", "1e-06"],
    ("syntax", "01"): ["syntax error", "line 16"],
    ("badimport", "01"): ["'numpie'", "does not exist"],
    ("raises", "01"): ["ZeroDivisionError"],
    ("hog", "01"): ["memory"],
    ("vandal", "01"): ["reach outside its sandbox"],
    ("quitter", "01"): ["sys.exit(0)"],
    ("quitter", "02"): ["ended while importing", "exited with code 0"],
    ("quitter", "03"): ["StopIteration"],
    ("patcher", "01"): ["import pytest", "refused"],
    ("patcher", "02"): ["import gpt2course.check.compare", "refused"],
    ("swapper", "01"): ["import gpt2course.check.compare", "refused"],
    ("rewriter", "01"): ["import _pytest", "refused"],
    ("peeker", "01"): ["solutions.solution_01", "refused"],
    ("forger", "01"): ["read another process's /proc files"],
    ("snoop", "01"): ["read outside its sandbox", "solution_01.py"],
    ("torcher", "03"): ["import torch", "refused"],
    ("crasher", "01"): ["SIGSEGV", "segmentation fault"],
    ("parrot", "03"): ["LayerNorm"],
    ("broken", "01"): ["could not read"],
    ("linker", "01"): ["symbolic link"],
    ("empty", "01"): ["not submitted"],
    ("limiter", "03"): ["resource limits of another process"],
    ("lingerer", "03"): ["resource limits of another process"],
    ("cacher", "03"): ["changed MAX's cache"],
    ("shouter", "01"): ["ValueError", "\\ud800", "\\x1b]0;pwned\\x07\\x1b[2J", "\\x00", " [...]"],
    ("eraser", "01"): ["solution_01.py"],
    ("prober", "01"): ["raw system call through ctypes: syscall"],
}

# The files the vandal aims at in the real repository (it appends MARK, or deletes).
REPO_TARGETS = ["tests/test_step_01.py", "tests/test_step_02.py", "tests/test_step_03.py",
                "solutions/solution_01.py", "solutions/solution_02.py", "gpt2course/check/compare.py",
                "tests/fixtures/class/syntax/steps/step_01.py"]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def make_class(dest: Path, names=None) -> Path:
    """A copy of the fixture class, with the submissions made.toml makes from the solutions."""
    shutil.copytree(FIXTURES, dest, symlinks=True,
                    ignore=None if names is None else
                    (lambda d, entries: [e for e in entries if Path(d) == FIXTURES and e not in names]))
    (dest / "made.toml").unlink(missing_ok=True)
    for made in tomllib.loads((FIXTURES / "made.toml").read_text())["file"]:
        if names is not None and made["student"] not in names:
            continue
        base = made.get("from", "solution")
        text = (skeleton.pristine_skeleton(made["step"]) if base == "skeleton"
                else skeleton.completed(course.solution_file(made["step"]).read_text()))
        for old, new in made.get("replace", []):
            assert old in text, f"made.toml: {old!r} no longer appears in the {base} of step {made['step']:02d}"
            text = text.replace(old, new)
        path = dest / made["student"] / "steps" / f"step_{made['step']:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        if made.get("fixture") == "before":  # the stored attack, then the answer
            text = path.read_text() + "\n\n" + text
        elif made.get("fixture") == "after":
            text = text + "\n\n" + path.read_text()
        path.write_text(text)
    return dest


def parrot_layer_norm() -> str:
    """A step 03 that computes nothing: its LayerNorm returns the outputs Hugging Face gives on
    the public seeded checkpoint and the public inputs, looked up by the input's shape."""
    import base64
    import io

    import numpy as np
    import torch

    from gpt2course.check import harness

    _, config, state = harness.checkpoint()
    prefix = "transformer.h.0.ln_1."
    tiny = harness.rng(3)  # the small-variance rows of tests/test_step_03.py, as it draws them
    x = np.stack([tiny.normal(0, 3e-3, size=(3, config.n_embd)),
                  tiny.normal(2.0, 1.0, size=(3, config.n_embd))]).astype(np.float32)
    tiny_out = torch.nn.functional.layer_norm(
        torch.from_numpy(x), (config.n_embd,), torch.from_numpy(state[prefix + "weight"]),
        torch.from_numpy(state[prefix + "bias"]), config.layer_norm_epsilon).numpy()
    outs = {}
    for arr in (harness.capture().outputs["transformer.h.0.ln_1"], tiny_out):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr, dtype=np.float32))
        outs[tuple(arr.shape)] = base64.b64encode(buf.getvalue()).decode()
    return (
        '"""Hostile: returns outputs precomputed for the public checkpoint and inputs."""\n\n'
        "import base64\nimport io\n\nimport numpy as np\n"
        "from max.experimental.nn import Module\nfrom max.experimental.tensor import Tensor\n\n"
        f"OUTPUTS = {outs!r}\n\n\n"
        "class LayerNorm(Module):\n"
        "    def __init__(self, dim: int, *, eps: float = 1e-5) -> None:\n"
        "        self.weight = Tensor.ones([dim])\n        self.bias = Tensor.zeros([dim])\n\n"
        "    def forward(self, x: Tensor) -> Tensor:\n"
        "        data = OUTPUTS[tuple(int(d) for d in x.shape)]\n"
        "        return Tensor.from_dlpack(np.load(io.BytesIO(base64.b64decode(data))))\n")


def run_grade(class_dir: Path, out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gpt2course", "grade", str(class_dir), "--out", str(out), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grade")
    klass = make_class(base / "class")
    shutil.rmtree(klass / "loops")
    (klass / "empty").mkdir()
    with zipfile.ZipFile(klass / "zoe.zip", "w") as zf:
        zf.write(klass / "good" / "steps" / "step_01.py", "zoe-main/steps/step_01.py")
        zf.writestr("zoe-main/README.md", "my course work")
    (klass / "broken.zip").write_bytes(b"this is not a zip file\n")
    (klass / "parrot" / "steps").mkdir(parents=True)
    (klass / "parrot" / "steps" / "step_03.py").write_text(parrot_layer_norm())
    (klass / "linker" / "steps").mkdir(parents=True)
    (klass / "linker" / "steps" / "step_01.py").symlink_to(ROOT / "solutions" / "solution_01.py")
    loops = make_class(base / "class2", names={"loops"})
    hackers = make_class(base / "class3", names={"judgehack", "sleeper"})
    shutil.rmtree(klass / "judgehack")
    shutil.rmtree(klass / "sleeper")
    hackers_before = tree_digest(hackers)

    class_before = tree_digest(klass)
    repo_before = {t: file_digest(ROOT / t) for t in REPO_TARGETS}
    cache = grade_workspace.modular_cache()
    cache_before = tree_digest(cache)
    t0 = time.monotonic()
    main = run_grade(klass, base / "out", "--steps", ",".join(STEPS), "--jobs", "2", "--timeout", "900",
                     "--memory", "2G", "--points", "03=2")
    second = run_grade(loops, base / "out2", "--steps", "01", "--jobs", "1", "--timeout", "10")
    # A fresh machine compiles MAX's eager kernels during this run (a minute or more per
    # step with both cores busy), so the limit is generous; the looping student has its own.
    out, err = main.communicate(timeout=2400)
    out2, err2 = second.communicate(timeout=300)
    # The judge-hacking students implement nothing: no reference needs warming to grade them.
    third = run_grade(hackers, base / "out3", "--steps", "12,13", "--jobs", "2", "--no-warm", "--stall", "20")
    out3, err3 = third.communicate(timeout=900)
    seconds = time.monotonic() - t0
    assert main.returncode == 0, out[-3000:] + err[-3000:]
    assert second.returncode == 0, out2[-3000:] + err2[-3000:]
    assert third.returncode == 0, out3[-3000:] + err3[-3000:]
    return {
        "base": base, "class": klass, "out": base / "out", "out2": base / "out2", "stdout": out,
        "stderr": err, "results": json.loads((base / "out" / "grades.json").read_text()),
        "results2": json.loads((base / "out2" / "grades.json").read_text()),
        "results3": json.loads((base / "out3" / "grades.json").read_text()), "hackers": hackers,
        "hackers_before": hackers_before,
        "class_before": class_before, "repo_before": repo_before, "seconds": seconds,
        "cache": cache, "cache_before": cache_before,
    }


def statuses(results):
    return {name: tuple(s["steps"][nn]["status"] for nn in STEPS) for name, s in results["students"].items()}


def test_every_student_gets_the_expected_verdicts(graded):
    assert statuses(graded["results"]) == EXPECTED


def test_messages_say_what_went_wrong(graded):
    students = graded["results"]["students"]
    for (name, nn), needles in MESSAGES.items():
        message = students[name]["steps"][nn]["message"] or ""
        for needle in needles:
            assert needle in message, (name, nn, message)
    assert students["wrong"]["steps"]["01"]["check"] == "defaults equal transformers.GPT2Config()'s"


def test_no_step_passes_that_was_not_solved(graded):
    passed = {(name, nn) for name, s in graded["results"]["students"].items()
              for nn, r in s["steps"].items() if r["status"] == "passed"}
    assert passed == {("good", "01"), ("good", "02"), ("good", "03"), ("wrong", "02"),
                      ("noisy", "01"), ("zoe", "01")}


def test_infinite_loop_times_out_and_leaves_no_process(graded):
    r = graded["results2"]["students"]["loops"]["steps"]["01"]
    assert r["status"] == "timeout" and "10 s" in r["message"]
    assert 9 < r["seconds"] < 120  # killed at the limit, not left running
    psutil = pytest.importorskip("psutil")
    for proc in psutil.process_iter(["cmdline"]):
        assert not any("-loops-01" in a for a in (proc.info["cmdline"] or [])), proc


def test_points_totals_and_reports(graded):
    res, out = graded["results"], graded["out"]
    assert res["points"] == {"01": 1, "02": 1, "03": 2} and res["max"] == 4
    totals = {name: (s["total"], s["max"]) for name, s in res["students"].items()}
    assert totals["good"] == (4, 4) and totals["wrong"] == (1, 4) and totals["vandal"] == (0, 4)
    for name, s in res["students"].items():
        for nn, r in s["steps"].items():
            assert r["seconds"] >= 0 and r["max_points"] == res["points"][nn]
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(EXPECTED) * len(STEPS)
    assert all(row["student_max"] == "4" for row in rows)
    wrong01 = next(r for r in rows if r["student"] == "wrong" and r["step"] == "01")
    assert wrong01["status"] == "failed" and "layer_norm_epsilon" in wrong01["message"]
    assert wrong01["first_failing_check"] == "defaults equal transformers.GPT2Config()'s"
    with open(out / "summary.csv") as f:
        summary = {r["student"]: r for r in csv.DictReader(f)}
    assert summary["good"]["total"] == "4" and summary["wrong"]["s02"] == "passed"
    suites = ET.parse(out / "junit.xml").getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted(EXPECTED)
    by_name = {s.get("name"): s for s in suites}
    assert all(len(s.findall("testcase")) == len(STEPS) for s in suites)
    assert by_name["broken"].get("errors") == "3" and by_name["wrong"].get("failures") == "2"
    props = {p.get("name"): p.get("value") for p in by_name["good"].iter("property")}
    assert props == {"total": "4", "max": "4"}


def test_terminal_table_and_progress(graded):
    out, err = graded["stdout"], graded["stderr"]
    assert out.splitlines()[0].split() == ["student", *STEPS, "total"]
    assert any(line.split()[:5] == ["good", "ok", "ok", "ok", "4/4"] for line in out.splitlines())
    assert any(line.split()[:5] == ["wrong", "FAIL", "ok", "-", "1/4"] for line in out.splitlines())
    assert f"[{len(EXPECTED) + 3}/{len(EXPECTED) + 3}]" in err  # the checks run: all but missing ones
    # course files may change under a shared checkout while it runs; submissions must not
    assert not [w for w in graded["results"]["warnings"] if str(graded["class"]) in w]


def test_output_is_capped(graded):
    log = graded["out"] / "logs" / "noisy" / "step_01.log"
    assert log.stat().st_size <= runner.LOG_KEEP + 200
    text = log.read_text()
    assert "bytes cut" in text and "printed 24" in text  # 3 MB at import, 20 MiB at exit
    assert len(graded["stdout"]) + len(graded["stderr"]) < 200_000


def test_repository_and_other_submissions_are_untouched(graded):
    assert tree_digest(graded["class"]) == graded["class_before"]
    assert {t: file_digest(ROOT / t) for t in REPO_TARGETS} == graded["repo_before"]
    for folder in ("tests", "solutions", "gpt2course"):
        for p in (ROOT / folder).rglob("*.py"):
            if "fixtures" not in p.parts:
                assert MARK not in p.read_text(errors="replace"), p
    assert not list(graded["base"].rglob("pwned.txt"))


def test_hostile_text_leaves_every_report_whole(graded):
    """Surrogates, escapes and NULs in a message: every report is written, parses, and holds the
    text escaped; nothing raw reaches the instructor's terminal."""
    out = graded["out"]
    for name in ("grades.json", "grades.csv", "summary.csv", "junit.xml"):
        data = (out / name).read_bytes()
        data.decode("utf-8")  # encodable: the surrogates were escaped
        assert not any(c in data for c in (b"\x1b", b"\x07", b"\x00")), name
    ET.parse(out / "junit.xml")  # valid XML 1.0: no control characters
    shouted = graded["results"]["students"]["shouter"]["steps"]["01"]["message"]
    assert len(shouted) < 5000
    assert not any(c in graded["stdout"] + graded["stderr"] for c in "\x1b\x07\x00")
    assert not (out / "failed.txt").exists()


def test_no_student_changes_the_shared_cache_or_a_later_check(graded):
    """What a check writes into MAX's cache is its own layer's: no file of the shared cache holds
    what the cacher wrote, none it had is gone, no named pipe is there, and a learner's check
    runs on it afterwards. (Its other files may change: the grader's own warming writes them,
    and so does any MAX run on this machine.)"""
    import stat as stat_

    after = tree_digest(graded["cache"])
    assert not set(graded["cache_before"]) - set(after), sorted(set(graded["cache_before"]) - set(after))[:5]
    for p in graded["cache"].rglob("*"):
        mode = p.lstat().st_mode
        assert not stat_.S_ISFIFO(mode), p
        if stat_.S_ISREG(mode) and p.stat().st_size < 200:
            assert b"tests/fixtures/class/cacher" not in p.read_bytes(), p
    check = subprocess.run([sys.executable, "-m", "gpt2course", "check", "03", "--target", "solutions"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_no_process_of_the_run_is_left(graded):
    psutil = pytest.importorskip("psutil")
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        assert "gpt2grade-" not in cmd and "gpt2course.check.worker" not in cmd, cmd


def test_the_judge_answers_no_request_of_the_workers_making(graded):
    """A step 12 and a step 13 that implement nothing and write their own requests on the pipe
    to the judge: the judge answers none, names what was asked, and nothing else changes."""
    steps = graded["results3"]["students"]["judgehack"]["steps"]
    assert (steps["12"]["status"], steps["13"]["status"]) == EXPECTED_JUDGEHACK
    assert "'getattr' of '__globals__'" in steps["12"]["message"], steps["12"]["message"]
    assert "'$j'" in steps["13"]["message"], steps["13"]["message"]
    for r in steps.values():
        assert "the submission asked the checking process for what it does not answer" in r["message"]
    assert graded["results3"]["students"]["judgehack"]["total"] == 0
    assert tree_digest(graded["hackers"]) == graded["hackers_before"]


def test_a_reply_that_never_comes_is_an_error(graded):
    r = graded["results3"]["students"]["sleeper"]["steps"]["12"]
    assert r["status"] == "error" and "used no CPU for 20 s" in r["message"], r
    assert r["seconds"] < 300


# ------------------------------------------------------------------ pieces, without running checks

def test_parse_options():
    assert grade.parse_steps("01,02,3") == [1, 2, 3]
    assert grade.parse_steps("1-3") == [1, 2, 3]
    assert grade.parse_points("07=2,12=3", [1, 7, 12]) == {1: 1.0, 7: 2.0, 12: 3.0}
    assert grade.parse_size("4G") == 4 << 30 and grade.parse_size("512MiB") == 512 << 20
    with pytest.raises(SystemExit):
        grade.parse_points("07:2", [7])


def test_reads_folders_and_zips(tmp_path):
    (tmp_path / "ann" / "steps").mkdir(parents=True)
    (tmp_path / "ann" / "steps" / "step_02.py").write_text("x = 2\n")
    (tmp_path / "ann" / "step_01.py").write_text("x = 1\n")
    (tmp_path / "ann" / "step_02.py").write_text("shadowed\n")  # steps/step_02.py comes first
    with zipfile.ZipFile(tmp_path / "bob.zip", "w") as zf:
        zf.writestr("bob-main/steps/step_03.py", "x = 3\n")
        zf.writestr("bob-main/solutions/solution_03.py", "not the student's\n")
        zf.writestr("__MACOSX/bob-main/steps/step_04.py", "junk\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    subs, ignored = submissions.collect(tmp_path)
    assert [s.name for s in subs] == ["ann", "bob"] and ignored == ["notes.txt"]
    assert subs[0].files == {1: b"x = 1\n", 2: b"x = 2\n"}
    assert subs[1].files == {3: b"x = 3\n"}


def test_judge_rejects_unsigned_incomplete_and_skipped_reports(tmp_path):
    key = "ab" * 32
    checks = [{"check": "a", "outcome": "passed"}, {"check": "b", "outcome": "passed"}]

    def verdict(report, sign=True, rc=0):
        if sign:
            report["signature"] = signing.sign(signing.signer(key), report)
        path = tmp_path / "r.json"
        path.write_text(json.dumps(report))
        return judge("s", 1, key, path, rc, None, "", runner.Options())

    def report(checks, collected=2, problems=()):
        return {"target": "steps", "steps": {"01": {"status": "passed", "checks": checks, "first_failure": None}},
                "grading": {"collected": {"01": collected}, "problems": list(problems)}}

    assert verdict(report(checks)).status == "passed"
    assert verdict(report(checks), sign=False).status == "error"
    assert verdict(report(checks, collected=3)).status == "error"
    assert verdict(report(checks, problems=["x"])).status == "error"
    assert verdict(report(checks), rc=1).status == "error"
    skipped = [checks[0], {"check": "b", "outcome": "skipped"}]
    assert verdict(report(skipped)).status == "failed"
    gpu = [checks[0], {"check": "b", "outcome": "skipped", "gpu_only": True}]
    assert verdict(report(gpu)).status == "passed"
    forged = report(checks)
    forged["signature"] = signing.sign(signing.signer(key), forged)
    forged["steps"]["01"]["checks"] = checks + checks
    (tmp_path / "r.json").write_text(json.dumps(forged))
    assert judge("s", 1, key, tmp_path / "r.json", 0, None, "", runner.Options()).status == "error"


def test_write_fence_paths(tmp_path):
    fence = WriteFence([tmp_path])
    assert fence.allowed(tmp_path / "a" / "b.txt")
    assert not fence.allowed(tmp_path.parent / "other.txt")
    assert not fence.allowed(str(tmp_path) + "-sibling/x")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    assert not fence.allowed(tmp_path / "link" / "escape.txt")


def test_classroom_workflow_has_one_test_per_step():
    text = classroom.WORKFLOW.read_text()
    assert text == classroom.workflow(), \
        "classroom.yml is out of date: run `python -m gpt2course.grade.classroom`"
    for n in course.numbers():
        assert f'command: bash -c "python -m gpt2course check {n:02d} 2>&1"' in text


def test_max_modules_that_compile_themselves_are_all_prepared():
    """A MAX module that compiles Mojo source into its own package on first import must be
    imported by the grader (prepare_max) before the sandboxed checks: a check may not write
    into site-packages, and on a fresh install the first student was blamed for MAX's write."""
    import max

    package = Path(list(max.__path__)[0])  # a namespace package: no __file__
    found = set()
    for path in package.rglob("*.py"):
        if "mojo.importer" in path.read_text(errors="replace"):
            rel = path.relative_to(package.parent).with_suffix("")
            found.add(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    assert found and found <= set(max_install.MAX_SELF_COMPILING), found


def test_prepare_max_builds_what_a_fresh_install_lacks():
    import importlib.util

    origin = Path(importlib.util.find_spec("max._kv_cache_ops").origin).parent
    cache, aside = origin / "__mojocache__", origin / "__mojocache__.aside"
    if not os.access(origin, os.W_OK):
        pytest.skip(f"{origin} is read-only here")
    if cache.exists():
        cache.rename(aside)
    try:
        max_install.prepare_max()
        assert any(cache.glob("*.so")), f"prepare_max did not build {cache}"
    finally:
        if aside.exists():
            if cache.exists():
                shutil.rmtree(aside)
            else:
                aside.rename(cache)


def test_precomputed_outputs_pass_only_on_the_public_inputs(graded):
    """The parrot's step 03 passes a learner's check, whose checkpoint and inputs are public,
    and fails grading, whose are drawn from a secret seed: the secret seed is what catches it."""
    from gpt2course.check.command import check_command

    report = graded["base"] / "parrot-public.json"
    cmd = check_command(3, str(graded["class"] / "parrot"), None, str(report))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=max_install.child_env(PYTHONPATH=str(ROOT)))
    result = json.loads(report.read_text())["steps"]["03"]
    assert result["status"] == "passed", done.stdout[-3000:]
    assert graded["results"]["students"]["parrot"]["steps"]["03"]["status"] == "failed"


def test_a_step_that_imports_earlier_solutions_is_graded(tmp_path):
    """Steps 04-13 import earlier solutions; the confined worker imports them after confining
    itself (the import system also looks for their bytecode, which must not count against the
    student). Step 08 imports solutions.solution_03, which the worker has not preloaded."""
    klass = tmp_path / "class"
    solution = skeleton.completed(course.solution_file(8).read_text())
    raising = solution.replace("    return input_tensor + sublayer_output",
                               "    raise ValueError('the shapes do not match, says the student')")
    assert raising != solution
    for name, text in (("ann", solution), ("bob", raising)):
        (klass / name / "steps").mkdir(parents=True)
        (klass / name / "steps" / "step_08.py").write_text(text)
    proc = run_grade(klass, tmp_path / "out", "--steps", "08", "--jobs", "2", "--timeout", "900")
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    students = json.loads((tmp_path / "out" / "grades.json").read_text())["students"]
    assert students["ann"]["steps"]["08"]["status"] == "passed", students["ann"]
    # An exception deep in a call from the judge: its traceback names the worker's own files,
    # which the confined worker may not read; that must not count against the student.
    bob = students["bob"]["steps"]["08"]
    assert bob["status"] == "failed" and "ValueError" in bob["message"], bob
