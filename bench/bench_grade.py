"""How long grading a class takes: `python -m gpt2course grade` on a synthetic class.

    python bench/bench_grade.py                           # 30 students x every step (the real size)
    python bench/bench_grade.py --students 30 --steps 01-03 --jobs 2   # what fits on a laptop

A benchmark, not a test: it asserts nothing. It builds a class of --students folders in a
temporary directory, each holding steps/step_NN.py for the chosen steps: by default a copy
of the reference solution (the worst case, since every check then runs to its end; a
failing step usually stops at its first failing sub-check). --skeletons F makes that
fraction of the students submit the untouched skeletons instead, which fail at once.
It then runs the grader once, as an instructor would (one subprocess, --jobs checks at a
time, MAX's kernel cache shared and warm after the first check of each step), and prints:

* wall time of the whole run, and checks per minute;
* per step: how many checks ran and their median / max seconds (each check's own wall
  time, as the grader records it, including its Python start-up and the sandbox);
* the sum of all checks' seconds divided by (wall time x jobs): how busy the --jobs slots
  were (1.0 = always busy);
* a projection to --project-students students (default 100) on --machines machines
  (``grade --shard K/N``), at the same per-check times;
* with --distinct, every student's code builds graphs of its own (as real students' code
  does), so each compiled check pays its compile instead of loading a classmate's graph;
* with --against REV, the same class graded by revision REV's grader, and the seconds per
  check each step gained or lost since (``--against 9510466``: the split into judge and
  worker process).

Run it after `make setup` (warm MAX caches); a cold cache adds each step's first compile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2course import course, skeleton  # noqa: E402
from gpt2course.grade import command as grade, runner  # noqa: E402


FORWARD = re.compile(r"^(?P<indent>[ \t]*)def forward\(self, (?P<arg>\w+)[^\n]*\n", re.M)


def distinct(text: str, i: int) -> str:
    """The same code, building a graph of its own: each forward() starts with
    ``x = x + x * 0 * i`` (exactly x, but a constant no other student's graph has: MAX keys its
    cache on the graph, constants included), so MAX compiles it as it would a student's own
    code instead of loading it from its cache. ``i`` is drawn per run (``main``), so a second
    run does not find the first one's graphs either."""
    def add(m):
        return f"{m.group(0)}{m.group('indent')}    {m.group('arg')} = {m.group('arg')} + {m.group('arg')} * 0 * {i}\n"
    return FORWARD.sub(add, text)


def build_class(dest: Path, students: int, steps: list[int], skeletons: float, differ: int = 0) -> None:
    """``differ``: 0, or the first of the constants that make each student's graphs their own."""
    n_skel = round(students * skeletons)
    for i in range(students):
        folder = dest / f"student{i + 1:02d}" / "steps"
        folder.mkdir(parents=True)
        source = "steps/step_{n:02d}.py" if i < n_skel else "solutions/solution_{n:02d}.py"
        for n in steps:
            text = skeleton.completed((ROOT / source.format(n=n)).read_text()) if i >= n_skel else \
                (ROOT / source.format(n=n)).read_text()
            (folder / f"step_{n:02d}.py").write_text(distinct(text, differ + i) if differ and i >= n_skel else text)


def grade_class(tree: Path, klass: Path, out: Path, steps, jobs, args) -> tuple[float, dict]:
    """One `grade` run with the grader of ``tree`` (this checkout, or --against's)."""
    cmd = [sys.executable, "-m", "gpt2course", "grade", str(klass), "--steps",
           ",".join(f"{n:02d}" for n in steps), "--jobs", str(jobs), "--timeout", args.timeout,
           "--memory", args.memory, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tree)))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(proc.returncode)
    return wall, json.loads((out / "grades.json").read_text())


def per_step_medians(results) -> dict[str, float]:
    out: dict[str, list] = {}
    for s in results["students"].values():
        for nn, r in s["steps"].items():
            out.setdefault(nn, []).append(r["seconds"])
    return {nn: statistics.median(v) for nn, v in sorted(out.items())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--steps", default=None, help="e.g. 01-03 or 01,02,03 (default: every step)")
    p.add_argument("--jobs", type=int, default=0, help="checks at a time (default: CPU cores)")
    p.add_argument("--skeletons", type=float, default=0.0,
                   help="fraction of students who submit the untouched skeletons (default 0)")
    p.add_argument("--timeout", default="900")
    p.add_argument("--memory", default=runner.DEFAULT_MEMORY)
    p.add_argument("--project-students", type=int, default=100)
    p.add_argument("--machines", default="1,4,13", help="project the wall time onto these many machines")
    p.add_argument("--distinct", action="store_true",
                   help="every student's code builds its own graphs (no MAX cache hits across students)")
    p.add_argument("--against", metavar="REV",
                   help="also grade the same class with the grader of git revision REV, and print the "
                   "per-check difference (the judge/worker split's cost: --against 9510466)")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--keep", action="store_true", help="keep the class and the reports")
    args = p.parse_args()

    steps = grade.parse_steps(args.steps)
    jobs = args.jobs or os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    before = None
    try:
        import secrets

        build_class(work / "class", args.students, steps, args.skeletons,
                    (2 + secrets.randbelow(1 << 22)) if args.distinct else 0)  # exact in float32
        print(f"grading {args.students} students x {len(steps)} steps "
              f"({args.students * len(steps)} checks), {jobs} at a time, on {os.cpu_count()} cores"
              f"{', every student building graphs of their own' if args.distinct else ''} ...", flush=True)
        wall, results = grade_class(ROOT, work / "class", work / "out", steps, jobs, args)
        if args.against:
            tree = work / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.against], cwd=ROOT,
                           check=True, capture_output=True)
            try:
                print(f"grading the same class with the grader of {args.against} ...", flush=True)
                before = grade_class(tree, work / "class", work / "out-before", steps, jobs, args)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    rows = [(int(nn), r) for s in results["students"].values() for nn, r in s["steps"].items()]
    seconds = [r["seconds"] for _, r in rows]
    statuses = {}
    for _, r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    per_step = {}
    for n in steps:
        secs = [r["seconds"] for m, r in rows if m == n]
        per_step[f"{n:02d}"] = {"checks": len(secs), "median_s": round(statistics.median(secs), 2),
                                "max_s": round(max(secs), 2)}
    busy = sum(seconds) / (wall * jobs)
    per_student = wall / args.students
    machines = [int(m) for m in args.machines.split(",") if m.strip()]
    projected = {m: round(per_student * args.project_students / m, 1) for m in machines}
    summary = {
        "students": args.students, "steps": [f"{n:02d}" for n in steps], "checks": len(rows), "jobs": jobs,
        "cores": os.cpu_count(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "wall_s": round(wall, 1), "checks_per_min": round(60 * len(rows) / wall, 1),
        "sum_check_s": round(sum(seconds), 1), "slots_busy": round(busy, 2), "statuses": statuses,
        "per_step": per_step,
        "distinct": args.distinct, "project_students": args.project_students,
        "projected_wall_s_by_machines": projected,
    }
    if before is not None:
        now, then = per_step_medians(results), per_step_medians(before[1])
        summary["against"] = {"rev": args.against, "wall_s": round(before[0], 1),
                              "median_s_per_step": then,
                              "added_s_per_check": {nn: round(now[nn] - then[nn], 2) for nn in now if nn in then}}
    print(f"wall {wall:.1f}s for {len(rows)} checks ({summary['checks_per_min']} checks/min), "
          f"statuses {statuses}")
    print(f"sum of per-check seconds {sum(seconds):.1f}s; --jobs slots busy {busy:.0%}")
    for nn, d in per_step.items():
        print(f"  step {nn} {course.step(int(nn))['title']:<32} {d['checks']:>3} checks  "
              f"median {d['median_s']:6.1f}s  max {d['max_s']:6.1f}s")
    for m, secs in projected.items():
        print(f"projected for {args.project_students} students x these steps on {m} machine(s) like this "
              f"one (--jobs {jobs} each, --shard K/{m}): {secs / 60:.0f} min")
    if before is not None:
        print(f"the grader of {args.against}: wall {before[0]:.1f}s; median seconds per check added now:")
        for nn, d in summary["against"]["added_s_per_check"].items():
            print(f"  step {nn}: {d:+.2f}s ({summary['against']['median_s_per_step'][nn]:.2f}s then)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
