"""`python -m gpt2course grade DIR`: grade a class, every step of every student, in isolation.

DIR holds one folder (or .zip) per student with that student's ``steps/step_NN.py`` files
(any subset; ``step_NN.py`` directly in the folder works too). Each (student, step) is
checked with the same per-step check learners run (``check.command.check_command``), in its own
process and its own temporary workspace that holds the course's checking code, the
reference solutions of the *earlier* steps only, and the student's file for that step.
So a broken step 03 costs only step 03, and ``import solutions.solution_NN`` for the step
being graded fails.

Each check is a judge that never imports the student's code and a worker that runs it,
confined (``gpt2course.grade.sandbox``: what it may read and write, no network); around
both, a wall-time limit, a memory limit, an output cap, and a key on the judge's stdin that
signs its report (docs/grading.md says what is and is not defended). Verdicts: passed, failed, error, timeout,
missing. Results: a table in the terminal and ``grades.json``, ``grades.csv``,
``summary.csv``, ``junit.xml`` and one capped log per check under ``--out``.

``--shard K/N`` grades only the K-th of N parts of the (student, step) pairs, and
``grade merge OUT1 OUT2 ... --out OUT`` merges the shards' outputs into one run's (shard.py).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from gpt2course import course
from gpt2course.course import ROOT
from gpt2course.grade import sandbox, shard as sharding
from gpt2course.grade.reports import build_results, details, table, write_reports
from gpt2course.grade import runner as runner_module
from gpt2course.grade.runner import DEFAULT_MAX_OUTPUT, DEFAULT_MEMORY, DEFAULT_TIMEOUT, Options, Runner
from gpt2course.grade.submissions import Submission, collect
from gpt2course.grade.verdict import Verdict, gib
from gpt2course.grade.workspace import (clean_cache, course_files, digests, needed_checkpoints,
                                       prepare_checkpoints, warm_cache)
from gpt2course.max_install import prepare_max


def parse_steps(text: str | None) -> list[int]:
    if not text:
        return course.numbers()
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part.lstrip("s"):
            a, b = part.split("-", 1)
            out.extend(range(course.parse_step(a), course.parse_step(b) + 1))
        else:
            out.append(course.parse_step(part))
    for n in out:
        course.step(n)
    return sorted(set(out))


def parse_points(text: str | None, steps: list[int]) -> dict[int, float]:
    points = {n: 1.0 for n in steps}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise SystemExit(f"--points: write it as 07=2,12=3 (got {part!r})")
        step, value = part.split("=", 1)
        n = course.parse_step(step)
        try:
            points[n] = float(value)
        except ValueError:
            raise SystemExit(f"--points: {value!r} is not a number") from None
    return {n: points[n] for n in steps}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if not m:
        raise SystemExit(f"not a size: {text!r} (write e.g. 8G or 512M)")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)])


class Progress:
    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()

    def update(self, v: Verdict) -> None:
        with self.lock:
            self.done += 1
            elapsed = time.monotonic() - self.t0
            if self.tty:
                n = 30
                filled = int(n * self.done / max(self.total, 1))
                sys.stderr.write(f"\r[{'#' * filled}{'.' * (n - filled)}] {self.done}/{self.total} checks "
                                 f"{elapsed:5.0f}s  last: {v.student} s{v.step:02d} {v.status:<8}")
                if self.done == self.total:
                    sys.stderr.write("\n")
            else:
                sys.stderr.write(f"[{self.done}/{self.total}] {v.student} s{v.step:02d} {v.status} "
                                 f"({v.seconds:.1f}s)\n")
            sys.stderr.flush()



def plan(subs: list[Submission], steps: list[int]) -> tuple[dict, list[tuple[Submission, int]]]:
    """The verdicts known without running anything (missing, refused), and the checks to run,
    later steps first (they take longest)."""
    verdicts: dict[tuple[str, int], Verdict] = {}
    todo = []
    for sub in subs:
        for n in steps:
            if sub.problem:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "error", message=sub.problem)
            elif n in sub.refused:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "error", message=sub.refused[n])
            elif n not in sub.files:
                verdicts[(sub.name, n)] = Verdict(sub.name, n, "missing",
                                                  message=f"steps/step_{n:02d}.py not submitted")
            else:
                todo.append((sub, n))
    todo.sort(key=lambda job: -job[1])
    return verdicts, todo


def run_all(todo: list[tuple[Submission, int]], runner: Runner, jobs: int,
            progress: Progress) -> dict[tuple[str, int], Verdict]:
    """Runs the checks ``jobs`` at a time; Ctrl-C stops every running check."""
    verdicts: dict[tuple[str, int], Verdict] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = {pool.submit(runner.run, sub, n): (sub, n) for sub, n in todo}
        try:
            for fut in concurrent.futures.as_completed(futures):
                sub, n = futures[fut]
                try:
                    v = fut.result()
                except Exception as exc:  # a grader bug must not lose the other students
                    v = Verdict(sub.name, n, "error", message=f"the grader failed on this check: "
                                f"{type(exc).__name__}: {exc}")
                verdicts[(sub.name, n)] = v
                progress.update(v)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            runner.stop()
            raise
    finally:
        pool.shutdown(wait=True)
        runner.close()
    return verdicts


def changed_while_grading(course_digest: dict[str, str], subs: list[Submission]) -> list[str]:
    """Warnings for course files and submissions whose bytes on disk changed during the run."""
    warnings = []
    changed = [k for k, d in digests(course_files()).items() if course_digest.get(k) != d]
    changed += [k for k in course_digest if not (ROOT / k).exists()]
    if changed:
        warnings.append("course files changed on disk while grading (the checks used the copy read at the start; "
                        "if nobody edited them, a submission may have written there): " + ", ".join(sorted(changed)))
    for sub in subs:
        for path, d in sub.digests.items():
            try:
                now = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                now = None
            if now != d:
                warnings.append(f"{path} changed while grading (graded: the copy read at the start)")
    return warnings


def grade(directory: Path, steps: list[int], points: dict[int, float], out: Path, jobs: int,
          opts: Options, shard: tuple[int, int] | None = None) -> tuple[dict, dict | None]:
    """Grades every (student, step) of ``directory``, or with ``shard`` = (K, N) the K-th of N
    parts of them (shard.py); returns the results (see reports.py) and, for a shard, its
    manifest (what a merge needs)."""
    t0 = time.monotonic()
    course = course_files()
    course_digest = digests(course)
    subs, ignored = collect(directory)
    prepare_max()
    prepare_checkpoints(needed_checkpoints(course, steps))
    cache_warnings = clean_cache()
    if opts.warm:
        warm_cache(steps, opts.device, sharding.course_version(course), jobs)
    landlock = sandbox.landlock_abi() if opts.landlock else 0
    verdicts, todo = plan(subs, steps)
    owned = None
    if shard is not None:
        k, n = shard
        owner = sharding.assign([(sub.name, step) for sub, step in todo], list(verdicts), n)
        owned = {pair for pair, s in owner.items() if s == k}
        verdicts = {pair: v for pair, v in verdicts.items() if pair in owned}
        todo = [(sub, step) for sub, step in todo if (sub.name, step) in owned]
        print(f"shard {k}/{n}: {len(owned)} of the class's {len(owner)} (student, step) pairs",
              file=sys.stderr, flush=True)
    print(f"grading {len(subs)} students x {len(steps)} steps ({len(todo)} checks to run, "
          f"{jobs} at a time; timeout {opts.timeout:g}s, memory {gib(opts.memory)}, "
          f"write fence: {'Landlock ABI ' + str(landlock) if landlock else 'audit hook only'})",
          file=sys.stderr, flush=True)
    if ignored:
        print(f"ignored (not a folder or .zip): {', '.join(ignored)}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="gpt2grade-"))
    os.chmod(work, 0o700)
    try:
        verdicts.update(run_all(todo, Runner(course, work, out / "logs", opts), jobs, Progress(len(todo))))
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "directory": str(directory), "device": opts.device or "cpu",
            "options": {"timeout_s": opts.timeout, "memory_bytes": opts.memory, "jobs": jobs,
                        "write_fence": f"landlock ABI {landlock}" if landlock else "audit hook"},
            "seconds": round(time.monotonic() - t0, 1), "ignored": ignored,
            "warnings": cache_warnings + clean_cache() + changed_while_grading(course_digest, subs)}
    if shard is None:
        return build_results(subs, steps, points, verdicts, meta), None
    manifest = sharding.manifest(k, n, sharding.course_version(course), subs, steps, points, sorted(owned),
                                 len(owner), dict(meta["options"], device=meta["device"]))
    return build_results(subs, steps, points, verdicts, dict(meta, shard=f"{k}/{n}"), owned), manifest


def cmd_grade(args) -> int:
    folders = list(args.dir)
    if folders[0] == "merge" and (len(folders) > 1 or not Path("merge").is_dir()):
        return cmd_merge(args, [Path(f) for f in folders[1:]])
    if len(folders) > 1:
        print(f"grade: give one class folder (got {len(folders)}: {' '.join(folders)}); to merge shards: "
              + course.command("grade", args=["merge", "OUT1", "OUT2", "...", "--out", "OUT"]), file=sys.stderr)
        return 2
    directory = Path(folders[0])
    if not directory.is_dir():
        print(f"grade: {directory} is not a folder (give the folder holding one folder or .zip per student)",
              file=sys.stderr)
        return 2
    steps = parse_steps(args.steps)
    points = parse_points(args.points, steps)
    shard = sharding.parse_shard(args.shard) if args.shard else None
    opts = Options(timeout=args.timeout, memory=parse_size(args.memory), max_output=parse_size(args.max_output),
                   device=args.device, landlock=not args.no_sandbox,
                   extra_writable=tuple(os.path.abspath(p) for p in args.allow_write), keep=args.keep,
                   warm=not args.no_warm, stall=args.stall)
    out = Path(args.out)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        results, manifest = grade(directory.resolve(), steps, points, out, args.jobs or os.cpu_count() or 1, opts,
                                  shard)
    except KeyboardInterrupt:
        print("\ngrading interrupted: the running checks were stopped; no reports written", file=sys.stderr)
        return 130
    paths = write_reports(out, results)
    (out / sharding.MANIFEST).unlink(missing_ok=True)  # a stale manifest would make this look like a shard
    if manifest is not None:
        paths.append(sharding.write_manifest(out, manifest))
    print(table(results))
    text = details(results)
    if text:
        print("\nnot passing:\n" + text)
    for w in results["warnings"]:
        print(f"WARNING: {w}")
    print(f"\n{len(results['students'])} students graded in {results['seconds']:g}s; reports: "
          + ", ".join(str(p) for p in paths) + f", logs in {out / 'logs'}")
    if manifest is not None:
        print(f"this is shard {manifest['shard']}/{manifest['of']} ({len(manifest['owned'])} of "
              f"{manifest['pairs']} pairs); when all {manifest['of']} are done, merge them: "
              + course.command("grade", args=["merge", "OUT1", "OUT2", "...", "--out", "OUT"]))
    return 0


def cmd_merge(args, folders: list[Path]) -> int:
    """``grade merge OUT1 OUT2 ... --out OUT``: the shards' reports as one unsharded run's."""
    given = [flag for flag, value in (("--steps", args.steps), ("--points", args.points), ("--shard", args.shard))
             if value]
    if given:
        print(f"grade merge: {', '.join(given)} belong to grading; a merge takes the shard folders and --out",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        results = sharding.merge(folders, out)
    except sharding.MergeError as exc:
        print(f"grade merge: {exc}", file=sys.stderr)
        return 2
    paths = write_reports(out, results)
    (out / sharding.MANIFEST).unlink(missing_ok=True)
    print(table(results))
    for w in results["warnings"]:
        print(f"WARNING: {w}")
    print(f"\nmerged {len(folders)} shards: {len(results['students'])} students; reports: "
          + ", ".join(str(p) for p in paths) + f", logs in {out / 'logs'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("grade", help="grade a class: every step of every student, in isolation",
                       usage="%(prog)s DIR [options] | %(prog)s merge OUT1 OUT2 ... --out OUT",
                       description="Grades DIR: one folder (or .zip) per student holding steps/step_NN.py files. "
                                   "With --shard K/N, only the K-th of N parts of the (student, step) pairs; "
                                   "'merge OUT1 OUT2 ...' then merges the shards' output folders into --out.")
    p.add_argument("dir", nargs="+", metavar="DIR",
                   help="the folder holding one folder or .zip per student; or merge and the shards' folders")
    p.add_argument("--steps", help="steps to grade, e.g. 01,02,03 or 1-6 (default: all)")
    p.add_argument("--points", help="points per step, e.g. 07=2,12=3 (default: 1 each)")
    p.add_argument("--shard", metavar="K/N",
                   help="grade only the K-th (1-based) of N parts of the (student, step) pairs, for a merge")
    p.add_argument("--out", default="grades", help="where the reports go (default: grades/)")
    p.add_argument("--jobs", type=int, default=0, help="checks at a time (default: the number of CPU cores)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one check may take (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--memory", default=DEFAULT_MEMORY, help=f"memory per check process (default {DEFAULT_MEMORY})")
    p.add_argument("--max-output", default=DEFAULT_MAX_OUTPUT,
                   help=f"output one check may print before it is stopped (default {DEFAULT_MAX_OUTPUT})")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--allow-write", action="append", default=[], metavar="PATH",
                   help="another folder checks may write to (repeatable)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="do not apply the OS-level (Landlock) write fence")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspaces (for debugging)")
    p.add_argument("--stall", type=float, default=runner_module.STALL_SECONDS, metavar="SECONDS",
                   help="a check whose processes use no CPU this long is stopped as an error "
                        f"(default {runner_module.STALL_SECONDS:g})")
    p.add_argument("--no-warm", action="store_true",
                   help="do not first compile the reference solutions into MAX's cache (checks cannot "
                        "write to it: each compiles what the cache lacks on its own, every time)")
    p.set_defaults(func=cmd_grade)
