"""Speed, side by side: our MAX GPT-2 (KV cache) against Hugging Face transformers (torch).

    make bench                          # GPT-2 124M shapes; fp32, bf16, int8, q4_0; CPU (and GPU)
    make bench ARGS='--dtype fp32'      # one dtype (also: --dtype bf16,int8,q4_0)
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

Per dtype (--dtype; gpt2course/run/precision.py: how our Linear weights are stored), our
side is shown beside Hugging Face in fp32 and, for bf16, beside Hugging Face in bf16 (torch
runs bf16 on the CPU; it has no weight-only int8 path there to compare with). The machine's
memory bandwidth is measured first (torch summing a 1 GiB array on --threads threads, best of
5), and each decode figure is also given as a share of what that bandwidth allows: a decoded
token reads every Linear weight once, so tokens/s <= bandwidth / weight bytes at that dtype.

Both sides also report their greedy tokens; the comparison says whether they
agree. The last line is `decode speedup vs HF: X.XX` (ours in fp32 / theirs in fp32, tokens/s).
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
    engine = CachedEngine(args.weights_path, device=args.device, dtype=args.dtype)
    setup_s = time.perf_counter() - t0
    vocab = engine.config.vocab_size
    out = {"side": "MAX", "setup_s": setup_s, "prefill_ms": {}, "weight_bytes": engine.weight_bytes}
    for n in args.prompt_lengths:
        ids = prompt_ids(n, vocab)
        out["prefill_ms"][str(n)] = median_ms(lambda: engine.prefill(ids), args.repeats)
    ids = prompt_ids(args.decode_prompt, vocab)
    logits, cache = engine.prefill(ids, capacity=ids.shape[1] + args.new_tokens + 1)
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
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = GPT2LMHeadModel.from_pretrained(args.weights_path, dtype=dtype).to(device).eval()
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


def side_membw(args) -> dict:
    """Read bandwidth: torch summing a 1 GiB float32 array on --threads threads, best of 5."""
    import torch

    torch.set_num_threads(args.threads)
    x = torch.ones(256 * 1024 * 1024, dtype=torch.float32)
    x.sum()
    best_s = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        best_s = min(best_s, time.perf_counter() - t0)
    return {"side": "memory", "gb_per_s": x.numel() * 4 / best_s / 1e9}


# --------------------------------------------------------------------------- driver

def run_side(side: str, args, device: str, dtype: str = "fp32") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--json", str(result),
               "--dtype", dtype,
               "--device", device, "--weights", str(args.weights_path), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens),
               "--decode-prompt", str(args.decode_prompt),
               "--prompt-lengths", ",".join(str(n) for n in args.prompt_lengths)]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"the {side} side ({dtype}) failed (exit {proc.returncode})")
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


def report(ours: dict, hf: dict, args, device: str, bandwidth: float | None) -> float:
    """One table per dtype: ours, Hugging Face fp32, Hugging Face at that dtype (bf16)."""
    base = hf["fp32"]
    for dtype, mine in ours.items():
        sides = [("MAX (ours)", mine), ("HF fp32", base)]
        if dtype != "fp32" and dtype in hf:
            sides.append((f"HF {dtype}", hf[dtype]))
        print(f"\n=== {device.upper()}: GPT-2 ({args.weights_desc}), weights {dtype}, batch 1; "
              f"best of {args.rounds} rounds ===")
        print(f"{'':32}" + "".join(f"{name:>14}" for name, _ in sides) + f"{'ours/HF fp32':>15}")
        for n in args.prompt_lengths:
            row = [r["prefill_ms"][str(n)] for _, r in sides]
            print(f"{f'prefill {n} tokens (ms)':32}" + "".join(f"{v:14.1f}" for v in row)
                  + f"{row[0] / row[1]:14.2f}x")
        row = [r["decode_tokens_per_s"] for _, r in sides]
        print(f"{f'decode {args.new_tokens} tokens (tokens/s)':32}" + "".join(f"{v:14.1f}" for v in row)
              + f"{row[0] / row[1]:14.2f}x")
        row = [r["peak_rss_mb"] for _, r in sides]
        print(f"{'peak memory, RSS (MiB)':32}" + "".join(f"{v:14.0f}" for v in row)
              + f"{row[0] / row[1]:14.2f}x")
        if bandwidth and device == "cpu":
            limit = bandwidth * 1e9 / mine["weight_bytes"]
            print(f"Linear weights {mine['weight_bytes'] / 2**20:.0f} MiB a token: at {bandwidth:.1f} GB/s "
                  f"at most {limit:.0f} tokens/s; ours {mine['decode_tokens_per_s'] / limit:.0%} of that")
        if dtype != "fp32" and "fp32" in ours:
            print(f"ours {dtype} / ours fp32, decode: "
                  f"{mine['decode_tokens_per_s'] / ours['fp32']['decode_tokens_per_s']:.2f}x")
        twin = hf.get(dtype, base)
        agree = sum(x == y for x, y in zip(mine["tokens"], twin["tokens"]))
        verdict = "yes" if mine["tokens"] == twin["tokens"] else f"no ({agree} of {len(mine['tokens'])} agree)"
        print(f"greedy tokens identical to HF {dtype if dtype in hf else 'fp32'}: {verdict}")
        if dtype != "fp32" and "fp32" in ours:
            first = next((k for k, (x, y) in enumerate(zip(mine["tokens"], ours["fp32"]["tokens"]))
                          if x != y), None)
            print("greedy tokens identical to ours fp32: "
                  + ("yes" if first is None else f"the first {first} of {len(mine['tokens'])}"))
    print(f"devices: ours {next(iter(ours.values()))['device']}; theirs {base['device']}, "
          f"torch {base.get('torch', '?')}, attention {base.get('attn_implementation', '?')}")
    return ours["fp32"]["decode_tokens_per_s"] / base["decode_tokens_per_s"] if "fp32" in ours else float("nan")


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
    from gpt2course.run.precision import DTYPES  # NumPy only

    p.add_argument("--dtype", default=",".join(DTYPES),
                   help=f"how our Linear weights are stored, comma-separated (default {','.join(DTYPES)})")
    p.add_argument("--side", choices=["max", "hf", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.prompt_lengths = [int(x) for x in str(args.prompt_lengths).split(",") if x]
    if not args.side:
        dtypes = [d for d in args.dtype.split(",") if d]
        wrong = [d for d in dtypes if d not in DTYPES]
        if wrong or not dtypes:
            p.error(f"--dtype: {', '.join(wrong) or 'none given'}; use {', '.join(DTYPES)}")

    if args.side:  # a child process: measure one side, write JSON
        args.weights_path = args.weights
        # MAX 26.7 has no working thread setting (InferenceSession(num_threads=...) aborts on
        # the CPU), and it uses every CPU the process may run on. So both sides are limited
        # the same way: to the first --threads CPUs, and torch to as many threads.
        if args.threads < len(os.sched_getaffinity(0)):
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
        result = {"max": side_max, "hf": side_hf, "memory": side_membw}[args.side](args)
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
    bandwidth = None
    if "cpu" in devices:
        bandwidth = run_side("memory", args, "cpu")["gb_per_s"]
        print(f"memory bandwidth (read, {args.threads} threads): {bandwidth:.1f} GB/s")
    # sides: ours at each dtype; Hugging Face in fp32 and, when asked for, in bf16
    sides = [("max", d) for d in dtypes]
    if not args.ours_only:
        sides += [("hf", d) for d in ("fp32", "bf16") if d == "fp32" or d in dtypes]
    speedup = {}
    for device in devices:
        runs: dict = {side: [] for side in sides}
        for r in range(args.rounds):
            # alternate the order, so no side always gets the quieter moment
            for side in (sides if r % 2 == 0 else sides[::-1]):
                name = ("MAX" if side[0] == "max" else "Hugging Face") + f" {side[1]}"
                print(f"[{device}] round {r + 1}/{args.rounds}: {name} ...", end=" ", flush=True)
                res = run_side(side[0], args, device, side[1])
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                print(f"decode {res['decode_tokens_per_s']:.1f} tokens/s, prefill "
                      + ", ".join(f"{n}: {ms:.0f} ms" for n, ms in res["prefill_ms"].items())
                      + f", peak RSS {res['peak_rss_mb']:.0f} MiB (load {load:.1f})", flush=True)
                runs[side].append(res)
        ours = {d: best(runs[("max", d)]) for d in dtypes}
        if args.ours_only:
            for d, mine in ours.items():
                print(f"\n=== {device.upper()}: ours only, GPT-2 ({args.weights_desc}), {d}, batch 1: "
                      f"decode {mine['decode_tokens_per_s']:.1f} tokens/s, peak RSS "
                      f"{mine['peak_rss_mb']:.0f} MiB, load / compile {mine['setup_s']:.1f} s ===")
            continue
        hf = {d: best(runs[("hf", d)]) for s_, d in sides if s_ == "hf"}
        speedup[device] = report(ours, hf, args, device, bandwidth)
    if args.ours_only:
        return 0
    for device in devices[1:]:
        print(f"decode speedup vs HF ({device}): {speedup[device]:.2f}")
    print(f"decode speedup vs HF: {speedup[devices[0]]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
