"""Speed, side by side: our MAX GPT-2 (KV cache) against Hugging Face transformers (torch).

    make bench                          # GPT-2 124M shapes, fp32, CPU (and GPU when present)
    make bench ARGS='--threads 4 --repeats 5'

The same weights, the same prompt, the same number of threads, one run on one
machine. Each side runs in its own subprocess, so each peak memory figure is
its own. Measured for each side:

* prefill latency: the prompt (128 and 512 random tokens) in, the next token's
  logits on the host out; the median of --repeats runs after one warm-up run.
  Both sides compute only the last position's logits (Hugging Face:
  logits_to_keep=1, as its generate() does).
* decode speed: after a 128-token prompt, 128 new tokens chosen greedily, one
  model call each, reusing the KV cache (Hugging Face: its DynamicCache through
  past_key_values=..., the loop its generate() runs, without generate's extra
  bookkeeping, so the fastest Hugging Face path).
* peak memory: the subprocess's peak resident set size (getrusage ru_maxrss).

Both sides also report their greedy tokens; the comparison says whether they
agree. The last line is `decode speedup vs HF: X.XX` (ours / theirs, tokens/s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def prompt_ids(n: int, vocab: int, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed + n).integers(0, vocab, size=(1, n), dtype=np.int64)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (first-call allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


# --------------------------------------------------------------------------- sides

def side_max(args) -> dict:
    import numpy as np

    from gpt2course.run.engine import CachedEngine

    t0 = time.perf_counter()
    engine = CachedEngine(args.weights_path, device=args.device)
    setup_s = time.perf_counter() - t0
    vocab = engine.config.vocab_size
    out = {"side": "MAX", "setup_s": setup_s, "prefill_ms": {}}
    for n in args.prompt_lengths:
        ids = prompt_ids(n, vocab)
        out["prefill_ms"][str(n)] = median_ms(lambda: engine.prefill(ids), args.repeats)
    ids = prompt_ids(args.decode_prompt, vocab)
    logits, cache = engine.prefill(ids)
    token = np.argmax(logits, axis=-1)[:, None]
    tokens = [int(token[0, 0])]
    t0 = time.perf_counter()
    for _ in range(args.new_tokens):
        logits, cache = engine.decode(token, cache)
        token = np.argmax(logits, axis=-1)[:, None]
        tokens.append(int(token[0, 0]))
    decode_s = time.perf_counter() - t0
    out.update(decode_tokens_per_s=args.new_tokens / decode_s, tokens=tokens,
               device=engine.device_name, peak_rss_mb=peak_rss_mb())
    return out


def side_hf(args) -> dict:
    import torch
    from transformers import DynamicCache, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "gpu" else "cpu"
    t0 = time.perf_counter()
    model = GPT2LMHeadModel.from_pretrained(args.weights_path, dtype=torch.float32).to(device).eval()
    setup_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    out = {"side": "Hugging Face", "setup_s": setup_s, "prefill_ms": {},
           "attn_implementation": model.config._attn_implementation}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for n in args.prompt_lengths:
            ids = torch.from_numpy(prompt_ids(n, vocab)).to(device)

            def prefill():
                o = model(ids, past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
                o.logits[:, -1].float().cpu().numpy()
            out["prefill_ms"][str(n)] = median_ms(prefill, args.repeats)
        ids = torch.from_numpy(prompt_ids(args.decode_prompt, vocab)).to(device)
        o = model(ids, past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
        past = o.past_key_values
        token = o.logits[:, -1].argmax(-1, keepdim=True)
        tokens = [int(token[0, 0])]
        sync()
        t0 = time.perf_counter()
        for _ in range(args.new_tokens):
            o = model(token, past_key_values=past, use_cache=True)
            past = o.past_key_values
            token = o.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(int(token[0, 0]))
        sync()
        decode_s = time.perf_counter() - t0
    out.update(decode_tokens_per_s=args.new_tokens / decode_s, tokens=tokens,
               device=f"{device} ({torch.get_num_threads()} threads)" if device == "cpu" else device,
               torch=torch.__version__, peak_rss_mb=peak_rss_mb())
    return out


# --------------------------------------------------------------------------- driver

def run_side(side: str, args, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--json", str(result),
               "--device", device, "--weights", str(args.weights_path), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens),
               "--decode-prompt", str(args.decode_prompt),
               "--prompt-lengths", ",".join(str(n) for n in args.prompt_lengths)]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"the {side} side failed (exit {proc.returncode})")
        return json.loads(result.read_text())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at start"
    return f"{cpu}, {os.cpu_count()} logical CPUs{load}, {platform.system()} {platform.release()}"


def best(results: list[dict]) -> dict:
    """Each figure's best round: on a shared machine the best is the least disturbed."""
    out = dict(results[0])
    out["prefill_ms"] = {n: min(r["prefill_ms"][n] for r in results) for n in results[0]["prefill_ms"]}
    out["decode_tokens_per_s"] = max(r["decode_tokens_per_s"] for r in results)
    # the smallest peak: a round in which MAX compiled (the first on a machine) peaks higher,
    # once per machine (each round's peak is printed as it comes)
    out["peak_rss_mb"] = min(r["peak_rss_mb"] for r in results)
    out["setup_s"] = min(r["setup_s"] for r in results)
    return out


def report(ours: dict, theirs: dict, args, device: str) -> float:
    print(f"\n=== {device.upper()}: GPT-2 ({args.weights_desc}), fp32, batch 1; "
          f"best of {args.rounds} rounds ===")
    print(f"{'':32}{'MAX (ours)':>16}{'Hugging Face':>16}{'ours/theirs':>14}")
    for n in args.prompt_lengths:
        a, b = ours["prefill_ms"][str(n)], theirs["prefill_ms"][str(n)]
        print(f"{f'prefill {n} tokens (ms)':32}{a:16.1f}{b:16.1f}{a / b:13.2f}x")
    a, b = ours["decode_tokens_per_s"], theirs["decode_tokens_per_s"]
    print(f"{f'decode {args.new_tokens} tokens (tokens/s)':32}{a:16.1f}{b:16.1f}{a / b:13.2f}x")
    a, b = ours["peak_rss_mb"], theirs["peak_rss_mb"]
    print(f"{'peak memory, RSS (MiB)':32}{a:16.0f}{b:16.0f}{a / b:13.2f}x")
    print(f"{'load / compile (s)':32}{ours['setup_s']:16.1f}{theirs['setup_s']:16.1f}")
    same = ours["tokens"] == theirs["tokens"]
    agree = sum(x == y for x, y in zip(ours["tokens"], theirs["tokens"]))
    verdict = "yes" if same else f"no ({agree} of {len(ours['tokens'])} agree)"
    print(f"greedy tokens identical: {verdict}")
    print(f"devices: ours {ours['device']}; theirs {theirs['device']}, torch {theirs.get('torch', '?')}, "
          f"attention {theirs.get('attn_implementation', '?')}")
    return ours["decode_tokens_per_s"] / theirs["decode_tokens_per_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="seeded-124m",
                   help="checkpoint folder, or seeded-124m (default: GPT-2 124M shapes, seeded)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="auto: CPU, and the GPU too when one is visible")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="CPUs for both sides (default: all this process may use)")
    p.add_argument("--prompt-lengths", default="128,512")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--decode-prompt", type=int, default=128, help="prompt tokens before decoding")
    p.add_argument("--repeats", type=int, default=3, help="prefill runs per measurement (median)")
    p.add_argument("--rounds", type=int, default=3,
                   help="times each side is measured, alternating; each figure's best round counts")
    p.add_argument("--ours-only", action="store_true",
                   help="measure our side only (the family's shapes: `--weights seeded-medium --ours-only`)")
    p.add_argument("--side", choices=["max", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.prompt_lengths = [int(x) for x in str(args.prompt_lengths).split(",") if x]

    if args.side:  # a child process: measure one side, write JSON
        args.weights_path = args.weights
        # MAX 26.7 has no working thread setting (InferenceSession(num_threads=...) aborts on
        # the CPU), and it uses every CPU the process may run on. So both sides are limited
        # the same way: to the first --threads CPUs, and torch to as many threads.
        if args.threads < len(os.sched_getaffinity(0)):
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
        result = side_max(args) if args.side == "max" else side_hf(args)
        Path(args.json).write_text(json.dumps(result))
        return 0

    from gpt2course.hf import checkpoints

    w = checkpoints.resolve_weights(args.weights, fallback="124m")
    args.weights_path = str(w.path)
    args.weights_desc = w.description.split(":")[0]
    devices = [args.device] if args.device != "auto" else ["cpu"]
    if args.device == "auto":
        try:
            from max.driver import accelerator_count

            if accelerator_count() > 0:
                devices.append("gpu")
        except Exception:
            pass
    print(f"machine: {machine()}")
    print(f"threads: {args.threads} on both sides; prompt lengths {args.prompt_lengths}; "
          f"{args.new_tokens} new tokens after a {args.decode_prompt}-token prompt; prefill: "
          f"median of {args.repeats} after a warm-up; {args.rounds} rounds per side, best counts")
    speedup = {}
    for device in devices:
        runs = {"max": [], "hf": []}
        for r in range(args.rounds):
            # alternate which side goes first, so neither always gets the quieter moment
            order = ("max", "hf") if r % 2 == 0 else ("hf", "max")
            for side in (("max",) if args.ours_only else order):
                name = "MAX" if side == "max" else "Hugging Face"
                print(f"[{device}] round {r + 1}/{args.rounds}: {name} ...", end=" ", flush=True)
                res = run_side(side, args, device)
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                print(f"decode {res['decode_tokens_per_s']:.1f} tokens/s, prefill "
                      + ", ".join(f"{n}: {ms:.0f} ms" for n, ms in res["prefill_ms"].items())
                      + f", peak RSS {res['peak_rss_mb']:.0f} MiB (load {load:.1f})", flush=True)
                runs[side].append(res)
        if args.ours_only:
            ours = best(runs["max"])
            print(f"\n=== {device.upper()}: ours only, GPT-2 ({args.weights_desc}), fp32, batch 1: decode "
                  f"{ours['decode_tokens_per_s']:.1f} tokens/s, peak RSS {ours['peak_rss_mb']:.0f} MiB, "
                  f"load / compile {ours['setup_s']:.1f} s ===")
            continue
        speedup[device] = report(best(runs["max"]), best(runs["hf"]), args, device)
    if args.ours_only:
        return 0
    for device in devices[1:]:
        print(f"decode speedup vs HF ({device}): {speedup[device]:.2f}")
    print(f"decode speedup vs HF: {speedup[devices[0]]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
