"""`grade DIR --shard K/N` and `grade merge`: a class graded on many machines.

One small class (good, wrong, syntax, empty; steps 01-03: six checks) is graded three times at
once, one check at a time each: whole, and as shards 1/2 and 2/2. The merge of the shards
must be the unsharded run's reports, file for file, once the run-specific fields are set
aside (RUN_SPECIFIC). The refusals and the split are tested on fabricated shard outputs,
without running a check.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gpt2course.course import ROOT
from gpt2course.grade import shard as sharding
from gpt2course.grade.command import plan
from gpt2course.grade.reports import WRITERS, build_results, write_reports
from gpt2course.grade.submissions import Submission

from test_grade import make_class, run_grade

STEPS = "01-03"
# What necessarily differs between two runs of the same class (shard.merge's docstring):
# grades.json's generated and seconds, each check's seconds; the seconds column of
# grades.csv; the time attributes of junit.xml. summary.csv has none.
RUN_SPECIFIC = {"grades.json": ("generated", "seconds", "students.*.steps.*.seconds"),
                "grades.csv": ("seconds",), "junit.xml": ("time",), "summary.csv": ()}


def normalised(name: str, text: str):
    if name == "grades.json":
        data = json.loads(text)
        data.pop("generated"), data.pop("seconds")
        for s in data["students"].values():
            for r in s["steps"].values():
                r.pop("seconds")
        return data
    if name == "grades.csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        for row in rows:
            row.pop("seconds")
        return rows
    if name == "junit.xml":
        root = ET.fromstring(text.encode())
        for el in root.iter():
            el.attrib.pop("time", None)
        return ET.tostring(root)
    return text


def merge_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2course", "grade", "merge", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    base = tmp_path_factory.mktemp("shard")
    klass = make_class(base / "class", names={"good", "wrong", "syntax"})
    (klass / "empty").mkdir()
    common = ("--steps", STEPS, "--jobs", "1", "--timeout", "900", "--memory", "2G", "--points", "03=2")
    runs = [run_grade(klass, base / "out", *common),
            run_grade(klass, base / "s1", *common, "--shard", "1/2"),
            run_grade(klass, base / "s2", *common, "--shard", "2/2")]
    outputs = [p.communicate(timeout=2400) for p in runs]
    for p, (out, err) in zip(runs, outputs):
        assert p.returncode == 0, out[-3000:] + err[-3000:]
    # The merge goes to the --out the unsharded run had, so that the log paths can be equal.
    (base / "out").rename(base / "whole")
    merged = merge_cmd(base / "s1", base / "s2", "--out", base / "out")
    assert merged.returncode == 0, merged.stdout[-3000:] + merged.stderr[-3000:]
    return {"base": base, "stderr": [err for _, err in outputs], "merge": merged}


def test_merged_shards_equal_one_unsharded_run(sharded):
    base = sharded["base"]
    for name in WRITERS:
        whole, merged = (base / "whole" / name).read_text(), (base / "out" / name).read_text()
        assert normalised(name, merged) == normalised(name, whole), name
    assert not (base / "out" / sharding.MANIFEST).exists()
    data = json.loads((base / "whole" / "grades.json").read_text())
    assert data["students"]["good"]["total"] == 4 and data["students"]["wrong"]["steps"]["02"]["status"] == "passed"
    for s in data["students"].values():  # the merge copied every check's log to where it says
        for r in s["steps"].values():
            assert (r["log"] is None) == (r["status"] == "missing")
            if r["log"]:
                assert Path(r["log"]).is_file()


def test_each_shard_grades_only_its_pairs(sharded):
    base = sharded["base"]
    mans = [json.loads((base / f"s{k}" / sharding.MANIFEST).read_text()) for k in (1, 2)]
    owned = [{tuple(p) for p in m["owned"]} for m in mans]
    assert not owned[0] & owned[1]
    assert owned[0] | owned[1] == {(s, nn) for s in ("empty", "good", "syntax", "wrong") for nn in ("01", "02", "03")}
    assert mans[0]["pairs"] == 12 and [m["shard"] for m in mans] == [1, 2] and mans[0]["of"] == 2
    for k, m in zip((1, 2), mans):
        res = json.loads((base / f"s{k}" / "grades.json").read_text())
        got = {(name, nn) for name, s in res["students"].items() for nn in s["steps"]}
        assert got == owned[k - 1] and res["shard"] == f"{k}/2"
    # six checks in all, dealt 3 and 3 (the 'checks to run' line of each shard's run)
    assert "(6 checks to run" in sharded["stderr"][0]
    assert all("(3 checks to run" in err for err in sharded["stderr"][1:])


def test_merge_refuses_a_different_course_version(sharded, tmp_path):
    base = sharded["base"]
    other = tmp_path / "s2"
    shutil.copytree(base / "s2", other)
    man = json.loads((other / sharding.MANIFEST).read_text())
    man["course_version"] = "0" * 64
    (other / sharding.MANIFEST).write_text(json.dumps(man))
    r = merge_cmd(base / "s1", other, "--out", tmp_path / "out")
    assert r.returncode == 2 and "mismatched shards" in r.stderr and "course versions" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ fabricated shards, no checks

def fake_class() -> list[Submission]:
    return [Submission("ann", "/c/ann", files={1: b"a1", 2: b"a2", 3: b"a3"}),
            Submission("bob", "/c/bob", files={1: b"b1"}),
            Submission("cat", "/c/cat", files={2: b"c2", 3: b"c3"}),
            Submission("dan", "/c/dan.zip", problem="could not read dan.zip: not a zip")]


def fake_run(out: Path, shard: tuple[int, int] | None, subs=None, version="v1") -> None:
    """What `grade` writes, with made-up verdicts for the checks (passed, in 1.5 s)."""
    subs = subs or fake_class()
    steps, points = [1, 2, 3], {1: 1.0, 2: 1.0, 3: 2.0}
    verdicts, todo = plan(subs, steps)
    for sub, n in todo:
        verdicts[(sub.name, n)] = sharding.Verdict(sub.name, n, "passed", passed_checks=2, total_checks=2,
                                                   seconds=1.5, log=str(out / "logs" / sub.name / f"step_{n:02d}.log"))
    meta = {"generated": "2025-01-01T00:00:00+00:00", "directory": "/c", "device": "cpu",
            "options": {"timeout_s": 900.0, "memory_bytes": 1 << 31, "jobs": 1, "write_fence": "audit hook"},
            "seconds": 9.0, "ignored": [], "warnings": []}
    owned = None
    if shard:
        owner = sharding.assign([(s.name, n) for s, n in todo], [p for p in verdicts if p not in
                                                                 {(s.name, n) for s, n in todo}], shard[1])
        owned = {p for p, k in owner.items() if k == shard[0]}
        meta["shard"] = f"{shard[0]}/{shard[1]}"
    results = build_results(subs, steps, points, verdicts, meta, owned)
    write_reports(out, results)
    for name, s in results["students"].items():
        for nn, r in s["steps"].items():
            if r["log"]:
                Path(r["log"]).parent.mkdir(parents=True, exist_ok=True)
                Path(r["log"]).write_text(f"log of {name} {nn}\n")
    if shard:
        sharding.write_manifest(out, sharding.manifest(shard[0], shard[1], version, subs, steps, points,
                                                       sorted(owned), len(owner),
                                                       {"timeout_s": 900.0, "memory_bytes": 1 << 31, "device": "cpu"}))


def test_fabricated_shards_merge_to_the_whole(tmp_path):
    fake_run(tmp_path / "whole", None)
    shutil.move(tmp_path / "whole", tmp_path / "kept")
    for k in (1, 2, 3):  # shard 2's machine has the class in another folder: no matter
        subs = fake_class()
        for sub in subs if k == 2 else ():
            sub.source = sub.source.replace("/c/", "/elsewhere/")
        fake_run(tmp_path / f"s{k}", (k, 3), subs=subs)
    results = sharding.merge([tmp_path / "s3", tmp_path / "s1", tmp_path / "s2"], tmp_path / "whole")
    write_reports(tmp_path / "whole", results)
    for name in WRITERS:
        assert normalised(name, (tmp_path / "whole" / name).read_text()) == \
            normalised(name, (tmp_path / "kept" / name).read_text()), name
    assert (tmp_path / "whole" / "logs" / "cat" / "step_03.log").read_text() == "log of cat 03\n"


@pytest.fixture
def three(tmp_path):
    for k in (1, 2, 3):
        fake_run(tmp_path / f"s{k}", (k, 3))
    return tmp_path


def refusal(folders, out) -> str:
    with pytest.raises(sharding.MergeError) as exc:
        sharding.merge(folders, out)
    assert "\n" not in str(exc.value) and not Path(out).exists()
    return str(exc.value)


def test_merge_refuses_overlapping_shards(three):
    shutil.copytree(three / "s2", three / "s2-again")
    msg = refusal([three / "s1", three / "s2", three / "s2-again", three / "s3"], three / "out")
    assert msg.startswith("overlapping shards: shard 2/3 is given twice") and "s2-again" in msg
    # a pair in two shards (a shard edited by hand, or of another split)
    man = json.loads((three / "s3" / sharding.MANIFEST).read_text())
    first = json.loads((three / "s1" / sharding.MANIFEST).read_text())["owned"][0]
    man["owned"].append(first)
    (three / "s3" / sharding.MANIFEST).write_text(json.dumps(man))
    msg = refusal([three / "s1", three / "s2", three / "s3"], three / "out")
    assert msg.startswith("overlapping shards:") and f"{first[0]} step {first[1]} is in both" in msg


def test_merge_refuses_missing_shards(three):
    msg = refusal([three / "s1", three / "s3"], three / "out")
    assert msg == "missing shards: 2/3 (got 1/3, 3/3)"
    (three / "notashard").mkdir()
    assert "is not a shard's output" in refusal([three / "s1", three / "notashard"], three / "out")


def test_merge_refuses_mismatched_shards(three, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    fake_run(other / "n2", (2, 2))
    assert "different N" in refusal([three / "s1", other / "n2"], three / "out")
    fake_run(other / "v2", (2, 3), version="v2")
    assert "different course versions" in refusal([three / "s1", other / "v2", three / "s3"], three / "out")
    subs = fake_class()
    subs[1].files[1] = b"changed"
    fake_run(other / "c2", (2, 3), subs=subs)
    assert "different classes" in refusal([three / "s1", other / "c2", three / "s3"], three / "out")
    man = json.loads((three / "s2" / sharding.MANIFEST).read_text())
    man["points"]["03"] = 3.0
    (three / "s2" / sharding.MANIFEST).write_text(json.dumps(man))
    assert "different points" in refusal([three / "s1", three / "s2", three / "s3"], three / "out")


def test_merge_does_not_write_into_a_shard(three):
    with pytest.raises(sharding.MergeError, match="is one of the shard folders"):
        sharding.merge([three / "s1", three / "s2", three / "s3"], three / "s2")


def test_merge_command_line(three, tmp_path):
    r = merge_cmd(three / "s1", three / "s3", "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip() == "grade merge: missing shards: 2/3 (got 1/3, 3/3)"
    r = merge_cmd(three / "s1", three / "s2", three / "s3", "--steps", "01", "--out", tmp_path / "out")
    assert r.returncode == 2 and "--steps" in r.stderr
    r = merge_cmd(three / "s1", three / "s2", three / "s3", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(WRITERS) | {"logs"}


def test_a_class_folder_named_merge_is_graded(tmp_path):
    """`grade merge` with nothing after it grades ./merge when that is a folder (here: empty)."""
    (tmp_path / "merge").mkdir()
    r = subprocess.run([sys.executable, "-m", "gpt2course", "grade", "merge", "--out", "o", "--steps", "01"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "o" / "grades.json").read_text())["students"] == {}


# ------------------------------------------------------------------ the split

def test_split_is_deterministic_disjoint_and_covering():
    names = [f"student{i:03d}" for i in range(37)]
    # some pairs need no check (a step not submitted): about one in seven
    checks = [(s, n) for s in names for n in range(1, 14) if sum(map(ord, s)) % 7 != n % 7]
    decided = [(s, n) for s in names for n in range(1, 14) if (s, n) not in set(checks)]
    for n in (1, 2, 3, 8, 13):
        a = sharding.assign(checks, decided, n)
        assert a == sharding.assign(list(reversed(checks)), list(reversed(decided)), n)  # order-free
        assert set(a) == set(checks) | set(decided) and set(a.values()) <= set(range(1, n + 1))
        # every step's checks are dealt evenly: each shard has the floor or the ceiling of 1/n
        for step in range(1, 14):
            per = [sum(1 for p in checks if p[1] == step and a[p] == k) for k in range(1, n + 1)]
            assert max(per) - min(per) <= 1, (n, step, per)


def test_parse_shard():
    assert sharding.parse_shard("2/8") == (2, 8) and sharding.parse_shard("1/1") == (1, 1)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(SystemExit):
            sharding.parse_shard(bad)


def test_recipes_agree_with_themselves():
    """The workflow's N is the length of its shard list, and it runs `grade --shard` and `grade merge`."""
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((ROOT / "docs" / "recipes" / "github-actions-grade.yml").read_text())
    shards = wf["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, wf["env"]["N"] + 1))
    runs = "\n".join(s.get("run", "") for s in wf["jobs"]["shard"]["steps"])
    assert "grade submissions --shard ${{ matrix.shard }}/$N" in runs
    assert wf["jobs"]["merge"]["needs"] == "shard"
    assert any("grade merge shards/grades-shard-* --out grades" in s.get("run", "")
               for s in wf["jobs"]["merge"]["steps"])
    # grade.slurm: tests/test_slurm.py runs it on Slurm
