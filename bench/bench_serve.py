"""Serving speed: tokens/s through `python -m gpt2course serve` at 1, 4 and 8 concurrent streams,
beside `make gpt2`'s single stream (the run path, in this process, on the same weights).

    python bench/bench_serve.py                              # seeded-124m shapes, CPU
    python bench/bench_serve.py --weights seeded-small       # the tests' tiny model (fast start)
    python bench/bench_serve.py --url http://127.0.0.1:8000/v1 --name gpt2   # a running server

It starts the course's serve command on 127.0.0.1 and a free port (unless --url is given),
waits until it answers, sends one warm-up round (the largest stream count, 8 tokens each),
then for each stream count N sends N streaming completions at once (fixed prompts,
temperature 0, --max-tokens new tokens each, EOS ignored so every stream makes exactly that
many), and prints per N: the wall time from the first request to the last token, total
tokens/s (all streams' tokens / wall), tokens/s per stream, and the median time to first
token. It then stops the server and runs `make gpt2`'s engine
(gpt2course.run.engine.CachedEngine + run.generate.generate, greedy, the same prompt and
token count) in this process, one stream, and prints its tokens/s the same way (prefill
included) and its decode-only figure. Nothing runs at the same time as anything else: on a
small machine the server and the in-process engine would share the cores.

No test asserts on these timings; they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Hello, my name is",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time",
    "In the beginning",
    "The meaning of life is",
    "Python is a programming language that",
    "Yesterday I went to the market and",
    "The weather today is",
]


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(weights: str, device: str | None, name: str, max_batch: int, log: Path,
                 timeout_s: float) -> tuple[subprocess.Popen, str]:
    from gpt2course.serve.command import is_ready

    port = free_port()
    cmd = [sys.executable, "-m", "gpt2course", "serve", "--weights", weights, "--port", str(port),
           "--host", "127.0.0.1", "--name", name, "--max-batch-size", str(max_batch)]
    if device:
        cmd += ["--device", device]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    t0 = time.monotonic()
    while not is_ready("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() - t0 > timeout_s:
            stop_server(proc)
            sys.exit(f"the server did not start; its log ({log}):\n" + log.read_text()[-4000:])
        time.sleep(2)
    print(f"server ready after {time.monotonic() - t0:.0f}s (log: {log})", flush=True)
    return proc, f"http://127.0.0.1:{port}/v1"


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the serve command stops its whole process group
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ANCHOR: client
def one_stream(client, name: str, prompt: str, max_tokens: int,
               ignore_eos: bool = True) -> tuple[int, float, float]:
    """(tokens, seconds to the first token, seconds to the last) of one streamed completion."""
    t0 = time.perf_counter()
    first, tokens, usage = None, 0, None
    stream = client.completions.create(model=name, prompt=prompt, max_tokens=max_tokens,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True},
                                       extra_body={"ignore_eos": True} if ignore_eos else None)
    for ev in stream:
        if ev.usage is not None:
            usage = ev.usage.completion_tokens
        if ev.choices and ev.choices[0].text:
            tokens += 1
            if first is None:
                first = time.perf_counter() - t0
    return (usage if usage is not None else tokens), first or float("nan"), time.perf_counter() - t0
# ANCHOR_END: client


def measure(client, name: str, streams: int, max_tokens: int, ignore_eos: bool = True) -> dict:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(streams)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda p: one_stream(client, name, p, max_tokens, ignore_eos), prompts))
    wall = time.perf_counter() - t0
    tokens = sum(r[0] for r in results)
    return dict(streams=streams, tokens=tokens, wall_s=wall, tok_s=tokens / wall,
                tok_s_per_stream=tokens / wall / streams,
                ttft_s=statistics.median(r[1] for r in results))


def engine_single_stream(weights_path: Path, device: str | None, max_tokens: int) -> dict:
    """`make gpt2`'s path: CachedEngine + generate, greedy, EOS ignored, one stream."""
    from gpt2course.hf import tokenizer
    from gpt2course.run.engine import CachedEngine
    from gpt2course.run.generate import generate

    engine = CachedEngine(weights_path, device=device or "cpu")
    ids = tokenizer.encode(PROMPTS[0])
    generate(engine, ids, 4, greedy=True, eos_token_id=None)  # warm-up
    t0 = time.perf_counter()
    new, stats = generate(engine, ids, max_tokens, greedy=True, eos_token_id=None)
    wall = time.perf_counter() - t0
    return dict(tokens=len(new), wall_s=wall, tok_s=len(new) / wall,
                decode_tok_s=stats.decode_tokens_per_s, ttft_s=stats.prefill_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="seeded-124m",
                    help="a checkpoint folder, seeded-124m (default) or seeded-small")
    ap.add_argument("--device", default=None, choices=["cpu", "gpu"])
    ap.add_argument("--streams", default="1,4,8", help="concurrent stream counts (default 1,4,8)")
    ap.add_argument("--max-tokens", type=int, default=64, help="new tokens per stream (default 64)")
    ap.add_argument("--url", default=None, help="measure a server that is already running")
    ap.add_argument("--name", default="gpt2", help="the served model's name (default gpt2)")
    ap.add_argument("--start-timeout", type=float, default=3600.0)
    ap.add_argument("--no-engine", action="store_true", help="skip the in-process single stream")
    ap.add_argument("--no-ignore-eos", action="store_true",
                    help="do not send MAX's ignore_eos field (servers that refuse unknown fields, "
                    "e.g. transformers serve); streams may then end early at end of text")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",")]

    from openai import OpenAI

    from gpt2course.hf import checkpoints

    w = checkpoints.resolve_weights(args.weights)
    print(f"weights: {w.description}\nload average at start: {load_average()} "
          f"({os.cpu_count()} cores)", flush=True)
    proc = None
    if args.url is None:
        log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "server.log"
        proc, url = start_server(args.weights, args.device, args.name, max(counts), log,
                                 args.start_timeout)
    else:
        url = args.url
    rows = []
    try:
        client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=1800)
        # warm-up at the largest stream count: MAX's first batch of a new size can stall
        measure(client, args.name, max(counts), 8, not args.no_ignore_eos)
        for n in counts:
            r = measure(client, args.name, n, args.max_tokens, not args.no_ignore_eos)
            rows.append(r)
            print(f"serve, {n} stream(s): {r['tokens']} tokens in {r['wall_s']:.2f}s = "
                  f"{r['tok_s']:.1f} tokens/s total, {r['tok_s_per_stream']:.1f} per stream, "
                  f"median first token {r['ttft_s'] * 1000:.0f} ms   (load {load_average()})",
                  flush=True)
    finally:
        if proc is not None:
            stop_server(proc)
    if not args.no_engine:
        e = engine_single_stream(w.path, args.device, args.max_tokens)
        print(f"make gpt2's engine, 1 stream (in process): {e['tokens']} tokens in "
              f"{e['wall_s']:.2f}s = {e['tok_s']:.1f} tokens/s (decode alone {e['decode_tok_s']:.1f}), "
              f"first token {e['ttft_s'] * 1000:.0f} ms   (load {load_average()})", flush=True)
        if rows and rows[0]["streams"] == 1:
            print(f"serve 1 stream / make gpt2: {rows[0]['tok_s'] / e['tok_s']:.2f}")
    if len(rows) > 1:
        print("total tokens/s vs 1 stream: " + ", ".join(
            f"{r['streams']} streams x{r['tok_s'] / rows[0]['tok_s']:.2f}" for r in rows[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
