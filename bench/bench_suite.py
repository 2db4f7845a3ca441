"""The test suite's cost model: seconds per test file and per honesty case, and what compiled.

Runs the suite (or the files given) the way CI does, `python -m pytest tests --target=solutions`,
optionally on a new machine's terms: with ``--cold`` every cache starts empty (HOME, MAX's cache,
the course's checkpoints and the Hugging Face cache all point into a fresh folder), as on a
machine that never ran the course; ``--clone`` runs it in a fresh clone of HEAD (what CI
checks out), with this checkout's .venv. It prints, and with ``--out`` writes as JSON:

- per test file: seconds (pytest's own timings, setup included: the honesty suite's cases all
  run in its module fixture, so its first test carries them) and tests passed/failed;
- per honesty case (tests/test_honesty.py writes a line per case to GPT2COURSE_SUITE_LOG): its
  seconds, the files MAX's cache gained while it ran (two cases run at a time, so the other's
  count too) and the compiles the check announced;
- the whole run's wall time and the load average at the start and the end.

    python bench/bench_suite.py --cold --clone            # a new machine (what issue 20 asks)
    python bench/bench_suite.py                           # this machine's caches as they are
    python bench/bench_suite.py tests/test_honesty.py -k s07 --cold

No test runs this. Its figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return "%.1f %.1f %.1f" % os.getloadavg()


def cold_env(home: Path) -> dict:
    """Every cache the suite fills, empty and inside ``home``."""
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               HF_HOME=str(home / ".cache" / "huggingface"))
    for key in ("MODULAR_CACHE_DIR", "GPT2_COURSE_CACHE", "HF_DATASETS_CACHE"):
        env.pop(key, None)
    return env


def per_file(junit: Path) -> dict[str, dict]:
    files: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "passed": 0, "failed": 0, "skipped": 0})
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("file") or (case.get("classname") or "").replace(".", "/") + ".py"
        row = files[Path(name).name]
        row["seconds"] += float(case.get("time") or 0)
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        elif case.find("skipped") is not None:
            row["skipped"] += 1
        else:
            row["passed"] += 1
    return {k: dict(v, seconds=round(v["seconds"], 1)) for k, v in sorted(files.items())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pytest_args", nargs="*", help="test files and pytest options (default: tests)")
    p.add_argument("--cold", action="store_true", help="every cache empty, as on a new machine")
    p.add_argument("--clone", action="store_true", help="in a fresh clone of HEAD (with this .venv)")
    p.add_argument("--out", help="write the results as JSON here")
    opts, extra = p.parse_known_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    root = ROOT
    if opts.clone:
        root = work / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(root)], check=True)
        (root / ".venv").symlink_to(ROOT / ".venv")
    env = cold_env(work / "home") if opts.cold else dict(os.environ)
    env["GPT2COURSE_SUITE_LOG"] = str(work / "cases.jsonl")
    env["PYTHONPATH"] = str(root)
    junit = work / "junit.xml"
    args = (opts.pytest_args + extra) or ["tests"]
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", *args, "-p", "no:cacheprovider",
           "--target=solutions", f"--junitxml={junit}", "-o", "junit_family=xunit1", "-q", "--durations=25"]
    print(f"running {' '.join(cmd[3:])} in {root} ({'cold: every cache empty' if opts.cold else 'caches as they are'}"
          f", load {load()})", flush=True)
    t0, load0 = time.time(), load()
    proc = subprocess.run(cmd, cwd=root, env=env)
    wall = time.time() - t0
    cases = []
    if (work / "cases.jsonl").exists():
        cases = [json.loads(line) for line in (work / "cases.jsonl").read_text().splitlines() if line.strip()]
    results = {"command": cmd[3:], "cold": opts.cold, "clone": opts.clone, "wall_s": round(wall, 1),
               "returncode": proc.returncode, "load_start": load0, "load_end": load(),
               "files": per_file(junit) if junit.exists() else {}, "honesty_cases": cases}
    print(f"\n{'test file':40} {'seconds':>8}  passed failed skipped")
    for name, row in results["files"].items():
        print(f"{name:40} {row['seconds']:8.1f}  {row['passed']:6} {row['failed']:6} {row['skipped']:7}")
    if cases:
        print(f"\n{'honesty case':60} {'seconds':>8} {'cache+':>7}  compiles")
        for c in sorted(cases, key=lambda c: -c["seconds"]):
            print(f"{c['case'][:60]:60} {c['seconds']:8.1f} {c['cache_files_gained']:7}  {c['compiled_s']}")
    print(f"\nwall {wall / 60:.1f} min (exit {proc.returncode}); load {load0} -> {results['load_end']}")
    if opts.out:
        Path(opts.out).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
