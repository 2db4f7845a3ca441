"""`python -m gpt2course COMMAND`: what `make` and `pixi run` call.

Each command lives in its own module, which exposes ``register(subparsers)``;
this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

from gpt2course import ROOT, manifest

# command module -> registers its own sub-commands
COMMAND_MODULES = [
    "gpt2course.cli",        # check, check-all, warm
    "gpt2course.workflow",   # progress, hint, reset, watch, doctor
    "gpt2course.grade",      # grade
    "gpt2course.run",        # gpt2
    "gpt2course.hf.hub",     # download-gpt2
]


def check_command(step: int, target: str = "steps", device: str | None = None,
                  report_json: str | None = None, fail_fast: bool = False) -> list[str]:
    """The pytest command line that checks one step (learners, CI and the grader all use it)."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / f"test_step_{step:02d}.py"),
           "-p", "no:cacheprovider", "--no-header", "-q", "--tb=no", "-rN",
           f"--target={target}"]
    if device:
        cmd.append(f"--device={device}")
    if report_json:
        cmd.append(f"--report-json={report_json}")
    if fail_fast:
        cmd.append("--exitfirst")
    return cmd


def check_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_check(step: int, target: str, device: str | None = None, report_json: str | None = None,
              fail_fast: bool = False, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(check_command(step, target, device, report_json, fail_fast), cwd=ROOT,
                          env=check_env(), **kwargs)


def cmd_check(args) -> int:
    step = manifest.parse_step(args.step)
    target = args.target or os.environ.get("GPT2_TARGET") or "steps"
    info = manifest.step(step)
    print(f"Checking step {step:02d} ({info['title']}) against Hugging Face GPT-2 "
          f"[target: {target}, device: {args.device or os.environ.get('GPT2_DEVICE') or 'cpu'}]",
          flush=True)
    return run_check(step, target, args.device, args.report_json, args.fail_fast).returncode


def cmd_check_all(args) -> int:
    target = args.target or os.environ.get("GPT2_TARGET") or "steps"
    failed = []
    for step in manifest.numbers():
        print(f"\n=== step {step:02d}: {manifest.step(step)['title']} ===", flush=True)
        if run_check(step, target, args.device).returncode != 0:
            failed.append(step)
    print()
    if failed:
        print(f"{len(failed)} of {len(manifest.numbers())} steps not passing: "
              + ", ".join(f"s{n:02d}" for n in failed))
        return 1
    print(f"all {len(manifest.numbers())} steps pass")
    return 0


def cmd_warm(args) -> int:
    """Runs every reference solution's check once so MAX's caches hold its kernels and graphs."""
    import time

    print("Warming MAX's caches: MAX compiles its kernels for this CPU the first time each is used\n"
          "and keeps them in ~/.cache/modular. Doing it now, once, makes each later check fast.\n"
          "This takes several minutes on a laptop CPU; nothing needs your attention.", flush=True)
    t_all = time.time()
    steps = manifest.numbers()
    for i, step in enumerate(steps, 1):
        t0 = time.time()
        print(f"  [{i}/{len(steps)}] step {step:02d} {manifest.step(step)['title']} ...", end=" ", flush=True)
        proc = run_check(step, "solutions", args.device, capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else "FAILED"
        print(f"{status} ({time.time() - t0:.0f}s)", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
            return 1
    print(f"MAX caches warm ({time.time() - t_all:.0f}s in all).")
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="check one step against Hugging Face GPT-2")
    p.add_argument("step", help="s07, 07 or 7")
    p.add_argument("--target", help="steps (default), solutions, or a folder with step_NN.py files")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--report-json", help="write the results as JSON here")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing sub-check")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("check-all", help="check every step")
    p.add_argument("--target")
    p.add_argument("--device")
    p.set_defaults(func=cmd_check_all)

    p = sub.add_parser("warm", help="compile MAX's kernels once (run by `make setup`)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_warm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2course",
                                     description="Build GPT-2 from scratch with MAX: course tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    broken: dict[str, str] = {}
    for name in COMMAND_MODULES:
        try:
            module = sys.modules[__name__] if name == __name__ else importlib.import_module(name)
        except ImportError as exc:
            # One command's missing package (numpy before `make install`, say) must not
            # take the others down: `doctor` exists precisely for that situation.
            broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        module.register(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if broken and exc.code not in (0, None):
            print("note: some commands could not load (run `make install` or `make doctor`):\n  "
                  + "\n  ".join(f"{k}: {v}" for k, v in broken.items()), file=sys.stderr)
        raise
    return args.func(args)
