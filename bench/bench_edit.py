"""Edit-to-verdict: how long a learner waits for `check NN` after saving a step file.

For each step (default 03, 04, 07, 08) it times the real learner command,
`python -m gpt2course check NN --target FOLDER`, on
  (a) the solution, and
  (b) each correct alternative of tests/alternatives.py (the same answer written with other
      operations, e.g. LayerNorm from F.mean and F.rsqrt): what a learner's own, correct code
      costs the first time MAX meets its op families, and again once they are cached.
Each case runs --repeat times (default 2: the first run and the same file again).

Per run it reports the seconds, the verdict, the compiles the check announced (its
"compiling ..." / "compiled in Ns" lines: graphs, and eager runs that took over 3 s and grew
MAX's cache) and how many files MAX's cache gained: a grown cache is what says MAX compiled
(a cached graph still prints "compiled in", in seconds).

    python bench/bench_edit.py                           # MAX's own cache (as a learner has it)
    python bench/bench_edit.py --fresh-cache /tmp/mc     # an empty cache: first-time costs
    python bench/bench_edit.py --steps 3 4 --repeat 1

    python bench/bench_edit.py --first-hour --fresh-cache /tmp/mc   # a new learner's first hour
    XDG_CACHE_HOME=/tmp/mc python bench/bench_edit.py --first-hour --skip-warm   # ... after its warm

--first-hour times what a learner meets on a new machine after `make install`: `make warm`
(`python -m gpt2course warm --jobs 2`; per step, when it finished), then the first check of
every step (the reference's code, as a learner's correct answer), then an edit of each step
whose check compiles a graph (the same code made into a graph of its own, as bench_grade's
--distinct does: exactly the same values, a constant no other graph has) and that file again,
and prints them beside issue 20's aims (first check 15 s eager, 30 s compiled; an edit 30 s
for 07 and 09, 60 s for 10, 11 and 13).

--fresh-cache DIR points MAX's caches at DIR (XDG_CACHE_HOME=DIR, so MAX uses DIR/modular;
bench/README.md says how that was found) for every check this run starts; DIR is emptied first.
No test runs this; its figures depend on the machine and on what else runs on it (the load
average is printed with every run).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from alternatives import ALTERNATIVES  # noqa: E402

from gpt2course import course  # noqa: E402

COMPILED = re.compile(r"compiled in ([\d.]+)s")


def modular_cache(env: dict) -> Path:
    """Where MAX keeps its compiled kernels and graphs for a process with this environment."""
    if env.get("MODULAR_CACHE_DIR"):  # MAX puts .mojo_cache, .mogg_cache, .max_cache right here
        return Path(env["MODULAR_CACHE_DIR"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modular"


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.exists() else 0


def load() -> str:
    return "load %.1f %.1f %.1f" % os.getloadavg()


def check(step: int, target: Path, env: dict, device: str | None) -> dict:
    cmd = [sys.executable, "-m", "gpt2course", "check", str(step), "--target", str(target)]
    if device:
        cmd += ["--device", device]
    cache = modular_cache(env)
    before = count_files(cache)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.time() - t0
    out = proc.stdout + proc.stderr
    compiles = [float(s) for s in COMPILED.findall(out)]
    return {"seconds": seconds, "verdict": {0: "passed", 1: "failed"}.get(proc.returncode, f"error {proc.returncode}"),
            "compile_lines": len(compiles), "compile_s": sum(compiles),
            "new_cache_files": count_files(cache) - before, "tail": out[-1500:]}


def cases(step: int, tmp: Path):
    """(name, target folder) for the solution and each alternative of ``step``."""
    source = course.solution_file(step).read_text()
    folder = tmp / f"s{step:02d}-solution"  # the solution as a learner's file: step_NN.py
    folder.mkdir()
    (folder / f"step_{step:02d}.py").write_text(source)
    yield "solution", folder
    for i, (name, old, new) in enumerate(ALTERNATIVES.get(step, [])):
        if source.count(old) != 1:
            raise SystemExit(f"step {step:02d}, alternative {name!r}: its text is not once in the solution")
        folder = tmp / f"s{step:02d}-alt{i}"
        folder.mkdir()
        (folder / f"step_{step:02d}.py").write_text(source.replace(old, new))
        yield f"alternative: {name}", folder


AIMS = {"first eager": 15.0, "first compiled": 30.0, "edit": {7: 30.0, 9: 30.0, 10: 60.0, 11: 60.0, 13: 60.0}}


def first_hour(env: dict, device: str | None, jobs: int, skip_warm: bool = False) -> int:
    """`warm`, then every step's first check, then an edit of each compiled step (see the docstring).
    ``skip_warm``: MAX's cache is as an earlier `make warm` left it; start at the first checks."""
    import random

    from bench_grade import distinct

    warm_out, warm_ok, warm_s = "", True, 0.0
    if not skip_warm:
        t0 = time.time()
        warm = subprocess.run([sys.executable, "-m", "gpt2course", "warm", "--jobs", str(jobs)], cwd=ROOT,
                              env=env, capture_output=True, text=True)
        warm_s = time.time() - t0
        warm_out, warm_ok = warm.stdout, warm.returncode == 0
        print(warm.stdout[-6000:], warm.stderr[-2000:], sep="\n", flush=True)
        print(f"warm: {warm_s:.0f}s ({'ok' if warm_ok else 'FAILED'}); {load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-first-hour-") as tmp:
        for step in course.numbers():
            kind = course.step(step).get("max")
            answer = Path(tmp) / f"s{step:02d}-answer"  # the reference's code as the learner's step_NN.py
            answer.mkdir()
            (answer / f"step_{step:02d}.py").write_text(course.solution_file(step).read_text())
            first = check(step, answer, env, device)
            edit = again = None
            if kind == "compiled":
                folder = Path(tmp) / f"s{step:02d}"
                folder.mkdir()
                # below 2**24: MAX refuses a Python int that float32 cannot hold exactly
                text = distinct(course.solution_file(step).read_text(), random.randrange(1, 2 ** 24))
                (folder / f"step_{step:02d}.py").write_text(text)
                edit, again = check(step, folder, env, device), check(step, folder, env, device)
            rows.append((step, kind, first, edit, again))
            for result in (first, edit):
                if result is not None and result["verdict"] != "passed":
                    print(result["tail"], flush=True)
            print(f"s{step:02d} ({kind}): first check {first['seconds']:.1f}s {first['verdict']}"
                  + (f"; edit {edit['seconds']:.1f}s {edit['verdict']} (+{edit['new_cache_files']} cache files), "
                     f"again {again['seconds']:.1f}s" if edit else "") + f"; {load()}", flush=True)
    warmed = {int(n): s for n, s in re.findall(r"step (\d+) (?:ok|FAILED) in (\d+)s", warm_out)}
    print(f"\n`make warm` on this cache: {f'{warm_s:.0f}s ({jobs} at a time)' if not skip_warm else 'skipped'}\n")
    print("| step | MAX | its reference in `make warm` | first check | aim | edit (graph of its own) | aim "
          "| the edited file again |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ok = warm_ok
    for step, kind, first, edit, again in rows:
        aim = AIMS["first compiled"] if kind == "compiled" else AIMS["first eager"]
        edit_aim = AIMS["edit"].get(step)
        edited = (f"{edit['seconds']:.1f} s | {f'{edit_aim:.0f} s' if edit_aim else '-'} | {again['seconds']:.1f} s"
                  if edit else "- | - | -")
        print(f"| {step:02d} | {kind} | {warmed.get(step, '-')} s | {first['seconds']:.1f} s | {aim:.0f} s | {edited} |")
        ok &= first["verdict"] == "passed" and (edit is None or edit["verdict"] == "passed")
    print(f"\n{load()}")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 4, 7, 8])
    ap.add_argument("--repeat", type=int, default=2, help="runs of each case (default 2)")
    ap.add_argument("--fresh-cache", metavar="DIR", help="empty DIR and use it as MAX's cache")
    ap.add_argument("--device", default=None, choices=course.DEVICES)
    ap.add_argument("--first-hour", action="store_true", help="warm, every step's first check, an edit of each "
                    "compiled step (a new learner's first hour; use with --fresh-cache)")
    ap.add_argument("--jobs", type=int, default=2, help="warm's --jobs in --first-hour (default 2)")
    ap.add_argument("--skip-warm", action="store_true", help="--first-hour on MAX's cache as an earlier "
                    "`make warm` left it: the first checks and edits only")
    args = ap.parse_args(argv)

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.fresh_cache:
        shutil.rmtree(args.fresh_cache, ignore_errors=True)
        Path(args.fresh_cache).mkdir(parents=True)
        env["XDG_CACHE_HOME"] = str(Path(args.fresh_cache).resolve())
        env.pop("MODULAR_CACHE_DIR", None)
    print(f"MAX cache: {modular_cache(env)} ({count_files(modular_cache(env))} files); "
          f"{os.cpu_count()} CPUs; {load()}", flush=True)
    if args.first_hour:
        return first_hour(env, args.device, args.jobs, args.skip_warm)

    rows = []  # (step, case, run, result)
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp:
        for step in args.steps:
            for name, target in cases(step, Path(tmp)):
                for run in range(1, args.repeat + 1):
                    r = check(step, target, env, args.device)
                    rows.append((step, name, run, r))
                    compiled = "yes" if r["new_cache_files"] else "no"
                    print(f"s{step:02d} {name} [run {run}]: {r['seconds']:.1f}s {r['verdict']}; "
                          f"MAX compiled: {compiled} ({r['compile_lines']} 'compiled in' lines, "
                          f"{r['compile_s']:.1f}s; +{r['new_cache_files']} cache files); {load()}",
                          flush=True)
                    if r["verdict"] != "passed":
                        print(r["tail"], flush=True)

    print("\nedit-to-verdict, seconds (first run / run again)")
    print("| step | case | first run | again | MAX compiled on the first run |")
    print("|---|---|---:|---:|---|")
    for step in args.steps:
        for name in dict.fromkeys(n for s, n, _, _ in rows if s == step):
            runs = [r for s, n, _, r in rows if s == step and n == name]
            first = runs[0]
            what = []
            if first["compile_lines"]:
                what.append(f"'compiled in' {first['compile_s']:.0f}s")
            if first["new_cache_files"]:
                what.append(f"+{first['new_cache_files']} cache files")
            again = f"{runs[1]['seconds']:.1f}" if len(runs) > 1 else "-"
            print(f"| {step:02d} | {name} | {first['seconds']:.1f} | {again} | {', '.join(what) or 'no'} |")
    print(f"\n{load()}")
    return 0 if all(r["verdict"] == "passed" for *_, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
