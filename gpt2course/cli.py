"""`python -m gpt2course COMMAND`: what `make` and `pixi run` call.

Each command lives in the subpackage of its role, in a module that exposes
``register(subparsers)``; this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gpt2course import course

# command module -> registers its own sub-commands (each exposes ``register(subparsers)``)
COMMAND_MODULES = [
    "gpt2course.check.command",   # check, check-all, warm
    "gpt2course.learn.progress",  # progress
    "gpt2course.learn.hint",      # hint
    "gpt2course.learn.reset",     # reset
    "gpt2course.learn.watch",     # watch
    "gpt2course.learn.doctor",    # doctor
    "gpt2course.grade.command",   # grade
    "gpt2course.run.command",     # gpt2
    "gpt2course.hf.hub",          # download-gpt2
    "gpt2course.serve.command",   # serve
    "gpt2course.evaluate.command",  # eval
    "gpt2course.evaluate.lens",   # lens
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2course",
                                     description="Build GPT-2 from scratch with MAX: course tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    broken: dict[str, str] = {}
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
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
            print(f"note: some commands could not load (run {course.command('install')} or "
                  f"{course.command('doctor')}):\n  "
                  + "\n  ".join(f"{k}: {v}" for k, v in broken.items()), file=sys.stderr)
        raise
    return args.func(args)
