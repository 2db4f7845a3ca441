"""`python -m gpt2course serve`: the course's GPT-2 behind an OpenAI-compatible HTTP server.

    make serve                                          # seeded or pretrained GPT-2 on port 8000
    make serve ARGS='--weights seeded-small --port 8001'
    make serve ARGS='--model steps'                     # your model (steps 10-12 must pass)

It runs MAX's own server, ``max serve`` from the same Python environment, with the course's
custom architecture (gpt2course/serve/arch/), as a child process in a process group of its
own, prints the URL and how to call it (curl, the ``openai`` package), and waits. Ctrl-C or
SIGTERM stops the server and every process it started (MAX's API process spawns a model
worker and helpers): the whole group gets SIGTERM, then SIGKILL if it lingers, and the
command checks that nothing of the group is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gpt2course import course
from gpt2course.check.command import add_target_device
from gpt2course.errors import CheckFailure
from gpt2course.hf import checkpoints
from gpt2course.hf.weights import CheckpointError, load_hf_state
from gpt2course.max_install import child_env
from gpt2course.run.command import add_dtype
from gpt2course.serve.folder import MODELS, servable_folder

DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_NAME = "gpt2"
DEFAULT_MAX_BATCH = 4
STOP_GRACE_S = 60.0  # SIGTERM, then this long before SIGKILL
ARCH_SPEC = f"{course.ROOT}:gpt2course.serve.arch"  # MAX: sys.path.append(ROOT); import the package


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def serve_extra_missing() -> str | None:
    """None when ``max serve`` can run here, else what is missing."""
    for name in ("max.pipelines", "max.serve", "fastapi", "uvicorn"):
        try:
            if importlib.util.find_spec(name) is None:
                raise ImportError(name)
        except (ImportError, ValueError):
            return name
    return None


def max_cli() -> list[str]:
    """The ``max`` command of this Python environment (not whatever is first on PATH)."""
    exe = Path(sys.executable).parent / "max"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from max._entrypoints.pipelines import main; "
            "sys.argv[0] = 'max'; sys.exit(main())"]


def server_command(folder: Path, *, port: int, host: str, device: str, name: str,
                   max_length: int, max_batch_size: int) -> list[str]:
    return [*max_cli(), "serve",
            "--custom-architectures", ARCH_SPEC,
            "--model", str(folder), "--served-model-name", name,
            "--devices", device, "--host", host, "--port", str(port),
            "--max-length", str(max_length), "--max-batch-size", str(max_batch_size),
            # The course's model runs one request at a time with its own cache (arch/model.py):
            # none of MAX's overlap scheduling, CUDA-graph capture or prefix caching applies.
            "--no-enable-overlap-scheduler", "--no-device-graph-capture",
            "--no-enable-prefix-caching",
            "--force"]  # a custom architecture's settings are not in MAX's validation tables


def server_env() -> dict[str, str]:
    env = child_env()
    # These are the only channels MAX reads them from (pydantic settings bound to environment
    # variables, no command-line flag), so they are set here, once, for the server alone: the
    # course never sends anything anywhere and never downloads (the served folder is local).
    env.setdefault("MAX_SERVE_DISABLE_TELEMETRY", "1")
    env.setdefault("OTEL_SDK_DISABLED", "true")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def examples(host: str, port: int, name: str) -> str:
    url = f"http://{host}:{port}/v1"
    body = json.dumps({"model": name, "prompt": "Hello, my name is", "max_tokens": 20,
                       "temperature": 0})
    return "\n".join([
        f"serving {name} at {url}  (OpenAI API: /v1/models, /v1/completions)",
        "try:",
        f"  curl {url}/completions -H 'Content-Type: application/json' -d {shlex.quote(body)}",
        "or, in Python (pip package openai):",
        "  from openai import OpenAI",
        f"  client = OpenAI(base_url={url!r}, api_key='none')",
        f"  r = client.completions.create(model={name!r}, prompt='Hello, my name is', "
        "max_tokens=20, temperature=0)",
        "  print(r.choices[0].text)",
        "Ctrl-C stops the server.",
    ])


def is_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v1/models", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM to the server's process group, SIGKILL after ``grace_s``; True when none is left."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so it does not linger as a zombie
            if not group_alive(pgid):
                return True
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            _err(f"the server's processes did not stop within {grace_s:.0f}s of SIGTERM: SIGKILL")
    proc.poll()
    return not group_alive(pgid)


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        # as the server will (uvicorn): a port kept only by closed connections is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class _Stop(Exception):
    pass


def cmd_serve(args) -> int:
    missing = serve_extra_missing()
    if missing:
        _err(f"error: `max serve` needs MAX's serving extra, and {missing} is not installed: "
             f"pip install 'max[serve]=={course.pins().get('max', '')}'")
        return 2
    if not 0 < args.port < 65536:
        _err("error: --port must be between 1 and 65535")
        return 2
    if args.dtype != "fp32" and args.model != "solutions":
        _err(f"error: --dtype {args.dtype} serves the reference model only: use --model solutions")
        return 2
    try:
        w = checkpoints.resolve_weights(args.weights)
        config, _ = load_hf_state(w.path)  # every tensor named and shaped, before MAX reads it
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        _err(f"error: {exc}")
        return 2
    _err(("weights: " if w.pretrained else "note: ") + w.description)
    if port_taken(args.host, args.port):
        _err(f"error: port {args.port} on {args.host} is in use (another server?): choose "
             "another with --port")
        return 2
    device = args.device or course.DEFAULT_DEVICE
    if args.model == "steps":
        from gpt2course.run.gate import gate_learner_steps

        try:
            gate_learner_steps(device=device)
        except CheckFailure as exc:
            _err(f"error: {exc.message}")
            if exc.hint:
                _err(f"hint: {exc.hint}")
            return 1
    folder = servable_folder(w.path, model=args.model, dtype=args.dtype)
    cmd = server_command(folder, port=args.port, host=args.host, device=device,
                         name=args.name, max_length=config.n_positions,
                         max_batch_size=args.max_batch_size)
    _err(f"starting MAX's server (model: {args.model}; the first start compiles the model, "
         "minutes on a laptop CPU; later starts take seconds to a minute) ...")
    _err("$ " + shlex.join(cmd))

    def on_signal(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=server_env(), cwd=str(course.ROOT), start_new_session=True)
        print(examples(args.host, args.port, args.name), flush=True)
        t0, ready = time.monotonic(), False
        while proc.poll() is None:
            if not ready and is_ready(args.host, args.port):
                ready = True
                print(f"ready after {time.monotonic() - t0:.0f}s: http://{args.host}:{args.port}/v1",
                      flush=True)
            time.sleep(1.0)
        _err(f"error: the server exited by itself with status {proc.returncode}")
        stop_group(proc, grace_s=5.0)  # its helpers, if any are left
        return proc.returncode or 1
    except (_Stop, KeyboardInterrupt) as why:
        _err(f"stopping the server ({why or 'SIGINT'}) ...")
        if proc is None:
            return 130
        if stop_group(proc):
            _err("stopped: no process of the server is left")
            return 0
        _err(f"error: processes of group {proc.pid} are still running; kill them with "
             f"kill -KILL -- -{proc.pid}")
        return 1
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve GPT-2 over HTTP (OpenAI API) with MAX's server",
                       description="Serve GPT-2 with `max serve` and the course's model: an "
                       "OpenAI-compatible API (/v1/models, /v1/completions; GPT-2 has no chat template). Ctrl-C stops it.")
    p.add_argument("--model", default="solutions", choices=list(MODELS),
                   help="solutions: the reference model with the course's KV cache (default); "
                   "steps: your MaxGPT2LMHeadModel from steps/ (steps 10-12 must pass)")
    p.add_argument("--weights", default=None,
                   help="a Hugging Face GPT-2 checkpoint folder, or seeded-124m / seeded-small "
                   "(default: GPT-2 from the local Hugging Face cache, else seeded-124m)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"interface to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--name", default=DEFAULT_NAME,
                   help=f"the model name clients send (default {DEFAULT_NAME!r})")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"most requests MAX batches together (default {DEFAULT_MAX_BATCH})")
    add_target_device(p, target=False)
    add_dtype(p)
    p.set_defaults(func=cmd_serve)
