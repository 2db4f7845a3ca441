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
* a projection to --project-students students (default 30) at the same per-check times.

Run it after `make setup` (warm MAX caches); a cold cache adds each step's first compile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2course import course  # noqa: E402
from gpt2course.grade import command as grade, runner  # noqa: E402


def build_class(dest: Path, students: int, steps: list[int], skeletons: float) -> None:
    n_skel = round(students * skeletons)
    for i in range(students):
        folder = dest / f"student{i + 1:02d}" / "steps"
        folder.mkdir(parents=True)
        source = "steps/step_{n:02d}.py" if i < n_skel else "solutions/solution_{n:02d}.py"
        for n in steps:
            shutil.copyfile(ROOT / source.format(n=n), folder / f"step_{n:02d}.py")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--steps", default=None, help="e.g. 01-03 or 01,02,03 (default: every step)")
    p.add_argument("--jobs", type=int, default=0, help="checks at a time (default: CPU cores)")
    p.add_argument("--skeletons", type=float, default=0.0,
                   help="fraction of students who submit the untouched skeletons (default 0)")
    p.add_argument("--timeout", default="900")
    p.add_argument("--memory", default=runner.DEFAULT_MEMORY)
    p.add_argument("--project-students", type=int, default=30)
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--keep", action="store_true", help="keep the class and the reports")
    args = p.parse_args()

    steps = grade.parse_steps(args.steps)
    jobs = args.jobs or os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    try:
        build_class(work / "class", args.students, steps, args.skeletons)
        cmd = [sys.executable, "-m", "gpt2course", "grade", str(work / "class"), "--steps",
               ",".join(f"{n:02d}" for n in steps), "--jobs", str(jobs), "--timeout", args.timeout,
               "--memory", args.memory, "--out", str(work / "out")]
        print(f"grading {args.students} students x {len(steps)} steps "
              f"({args.students * len(steps)} checks), {jobs} at a time, on {os.cpu_count()} cores ...",
              flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
            return proc.returncode
        results = json.loads((work / "out" / "grades.json").read_text())
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
    summary = {
        "students": args.students, "steps": [f"{n:02d}" for n in steps], "checks": len(rows), "jobs": jobs,
        "cores": os.cpu_count(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "wall_s": round(wall, 1), "checks_per_min": round(60 * len(rows) / wall, 1),
        "sum_check_s": round(sum(seconds), 1), "slots_busy": round(busy, 2), "statuses": statuses,
        "per_step": per_step,
        f"projected_wall_s_{args.project_students}_students": round(per_student * args.project_students, 1),
    }
    print(f"wall {wall:.1f}s for {len(rows)} checks ({summary['checks_per_min']} checks/min), "
          f"statuses {statuses}")
    print(f"sum of per-check seconds {sum(seconds):.1f}s; --jobs slots busy {busy:.0%}")
    for nn, d in per_step.items():
        print(f"  step {nn} {course.step(int(nn))['title']:<32} {d['checks']:>3} checks  "
              f"median {d['median_s']:6.1f}s  max {d['max_s']:6.1f}s")
    print(f"projected for {args.project_students} students at these per-check times: "
          f"{per_student * args.project_students:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
