"""Grading one class on many machines.

``grade DIR --shard K/N`` grades the K-th of N parts of the class's (student, step) pairs and
writes, besides the usual reports of those pairs, ``shard.json``: what a merge needs (which
pairs this shard owns, the course version, the class, the steps, the points, K and N).
``grade merge OUT1 OUT2 ... --out OUT`` checks that the shards belong together and are all
there, then writes exactly the reports one unsharded run writes.

The split. Every machine reads the same class, so every machine builds the same list: first
the pairs that need a check, ordered by (step, student), then the pairs decided without one
(missing, unreadable), in the same order; pair i goes to shard ``i % N + 1``. Dealing each
step's checks round the shards in turn gives every shard the floor or the ceiling of 1/N of
*every* step's checks, so the expensive steps (08, 10, 11 cost about ten times step 01) are
spread as evenly as the cheap ones, and the count carried over from one step to the next
rotates which shards get the extra one. A hash of (student, step) mod N is as deterministic
but leaves each shard a random count (off by about the square root of its share), and dealing
in (student, step) order puts a whole step on one shard whenever N divides the step count.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from gpt2course.grade.submissions import Submission
from gpt2course.grade.verdict import Verdict

MANIFEST = "shard.json"
FORMAT = 1
# options that decide a verdict: shards graded with different ones do not merge
VERDICT_OPTIONS = ("timeout_s", "memory_bytes", "device")

Pair = tuple[str, int]


class MergeError(Exception):
    """Why shard outputs cannot be merged (one line)."""


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise SystemExit(f"--shard: write it as K/N, e.g. 2/8 for the second of 8 parts (got {text!r})") from None
    if not 1 <= k <= n:
        raise SystemExit(f"--shard {text}: K must be between 1 and N (got K={k}, N={n})")
    return k, n


def assign(checks: list[Pair], decided: list[Pair], n: int) -> dict[Pair, int]:
    """Each pair's shard (1..n): the checks dealt round in (step, student) order, then the pairs
    decided without a check, continuing the count."""
    order = sorted(checks, key=lambda p: (p[1], p[0])) + sorted(decided, key=lambda p: (p[1], p[0]))
    return {pair: i % n + 1 for i, pair in enumerate(order)}


def course_version(files: dict[str, bytes]) -> str:
    """A digest of the course's checking files (what every check runs): shards graded with
    different checking code do not merge."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


def class_digest(subs: list[Submission]) -> str:
    """A digest of the class as read: the students, their step files' bytes, what was refused.
    Not the paths, which differ between machines."""
    data = [[s.name, {f"{n:02d}": hashlib.sha256(b).hexdigest() for n, b in sorted(s.files.items())},
             sorted(f"{n:02d}" for n in s.refused), s.problem is not None] for s in subs]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def manifest(k: int, n: int, version: str, subs: list[Submission], steps: list[int],
             points: dict[int, float], owned: list[Pair], pairs: int, options: dict) -> dict:
    return {"format": FORMAT, "shard": k, "of": n, "course_version": version, "class": class_digest(subs),
            "steps": [f"{s:02d}" for s in steps], "points": {f"{s:02d}": p for s, p in points.items()},
            "options": {key: options[key] for key in VERDICT_OPTIONS},
            "students": [[s.name, s.source] for s in subs], "pairs": pairs,
            "owned": [[name, f"{step:02d}"] for name, step in sorted(owned, key=lambda p: (p[0], p[1]))]}


def write_manifest(out: Path, data: dict) -> Path:
    path = out / MANIFEST
    path.write_text(json.dumps(data, indent=1))
    return path


def is_shard_output(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file() and (Path(folder) / "grades.json").is_file()


# --------------------------------------------------------------------------- merge

def _read(folder: Path) -> tuple[dict, dict]:
    if not Path(folder).is_dir():
        raise MergeError(f"{folder} is not a folder")
    if not (Path(folder) / MANIFEST).is_file():
        raise MergeError(f"{folder} is not a shard's output (it has no {MANIFEST}; grade with --shard K/N)")
    try:
        man = json.loads((Path(folder) / MANIFEST).read_text())
        results = json.loads((Path(folder) / "grades.json").read_text())
    except (OSError, ValueError) as exc:
        raise MergeError(f"{folder}: cannot read its {MANIFEST} and grades.json ({exc})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise MergeError(f"{folder}/{MANIFEST} is not a shard manifest of format {FORMAT}")
    return man, results


def _same(shards: list[tuple[Path, dict, dict]], key: str, what: str) -> None:
    first_folder, first, _ = shards[0]
    for folder, man, _ in shards[1:]:
        if man.get(key) != first.get(key):
            a, b = first.get(key), man.get(key)
            shown = (f"{a} vs {b}" if len(json.dumps([a, b])) < 120 else "they differ")
            raise MergeError(f"mismatched shards: {first_folder} and {folder} have different {what} ({shown})")


def check_shards(folders: list[Path]) -> list[tuple[Path, dict, dict]]:
    """The shards, ordered by K, once they are known to belong together and to be complete;
    else MergeError naming the problem."""
    if not folders:
        raise MergeError("no shard folders given")
    shards = [(Path(f), *_read(Path(f))) for f in folders]
    _same(shards, "of", "N (--shard K/N)")
    _same(shards, "course_version", "course versions (the checking code changed between them)")
    _same(shards, "class", "classes (the submissions differ)")
    _same(shards, "steps", "steps (--steps)")
    _same(shards, "points", "points (--points)")
    _same(shards, "options", "verdict options (--timeout, --memory, --device)")
    names = [[name for name, _ in man["students"]] for _, man, _ in shards]
    for (folder, _, _), these in zip(shards[1:], names[1:]):
        if these != names[0]:  # the class digest differs too; the paths may differ between machines
            raise MergeError(f"mismatched shards: {shards[0][0]} and {folder} have different students")
    n = shards[0][1]["of"]
    seen: dict[int, Path] = {}
    for folder, man, _ in shards:
        k = man["shard"]
        if k in seen:
            raise MergeError(f"overlapping shards: shard {k}/{n} is given twice ({seen[k]} and {folder})")
        seen[k] = folder
    missing = [k for k in range(1, n + 1) if k not in seen]
    if missing:
        raise MergeError(f"missing shards: {', '.join(f'{k}/{n}' for k in missing)} "
                         f"(got {', '.join(f'{k}/{n}' for k in sorted(seen))})")
    owner: dict[tuple[str, str], Path] = {}
    for folder, man, _ in shards:
        for name, nn in man["owned"]:
            if (name, nn) in owner:
                raise MergeError(f"overlapping shards: {name} step {nn} is in both {owner[(name, nn)]} and {folder}")
            owner[(name, nn)] = folder
    students = [name for name, _ in shards[0][1]["students"]]
    expected = {(name, nn) for name in students for nn in shards[0][1]["steps"]}
    left = sorted(expected - set(owner))
    if left or len(owner) != shards[0][1]["pairs"] or set(owner) != expected:
        what = ", ".join(f"{a} step {b}" for a, b in left[:5]) or "pairs that are not in the class"
        raise MergeError(f"the shards do not cover the class: {what}")
    for folder, man, results in shards:
        for name, nn in man["owned"]:
            if nn not in ((results.get("students") or {}).get(name) or {}).get("steps", {}):
                raise MergeError(f"{folder}/grades.json has no verdict for {name} step {nn}, which its shard owns")
    return sorted(shards, key=lambda s: s[1]["shard"])


def _joined(values: list):
    """One value if every shard had it, else each shard's, in shard order."""
    return values[0] if all(v == values[0] for v in values) else values


def merge(folders: list[Path], out: Path) -> dict:
    """The results one unsharded run would have built (reports.build_results), from the shards;
    copies each check's log into ``out/logs``. The run-specific fields: ``generated`` (now),
    ``seconds`` (the longest shard's: the wall time when they run side by side), each check's
    ``seconds`` (its shard's), ``options.jobs`` and ``options.write_fence`` (one value if the
    shards agree, else each shard's), ``directory`` and each student's ``source`` (shard 1's
    paths)."""
    from gpt2course.grade.reports import build_results
    from gpt2course.grade.runner import _safe

    shards = check_shards(folders)
    out = Path(out)
    if any(out.resolve() == folder.resolve() for folder, _, _ in shards):
        raise MergeError(f"--out {out} is one of the shard folders: merge into another folder")
    first_man, first_res = shards[0][1], shards[0][2]
    subs = [Submission(name, source) for name, source in first_man["students"]]
    steps = [int(nn) for nn in first_man["steps"]]
    points = {int(nn): p for nn, p in first_man["points"].items()}
    verdicts: dict[Pair, Verdict] = {}
    copies = []
    for folder, man, results in shards:
        for name, nn in man["owned"]:
            r = dict(results["students"][name]["steps"][nn])
            for key in ("points", "max_points"):
                r.pop(key, None)
            v = Verdict(name, int(nn), **r)
            if v.log is not None:
                rel = Path("logs") / _safe(name) / f"step_{nn}.log"
                v.log = str(out / rel)
                copies.append((folder / rel, out / rel))
            verdicts[(name, int(nn))] = v
    for src, dest in copies:
        if src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    opts = [res.get("options") or {} for _, _, res in shards]
    warnings: list[str] = []
    for _, _, res in shards:
        warnings += [w for w in res.get("warnings") or [] if w not in warnings]
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "directory": first_res.get("directory"), "device": first_res.get("device"),
            "options": {"timeout_s": opts[0].get("timeout_s"), "memory_bytes": opts[0].get("memory_bytes"),
                        "jobs": _joined([o.get("jobs") for o in opts]),
                        "write_fence": _joined([o.get("write_fence") for o in opts])},
            "seconds": max(res.get("seconds") or 0 for _, _, res in shards),
            "ignored": first_res.get("ignored") or [], "warnings": warnings}
    return build_results(subs, steps, points, verdicts, meta)
