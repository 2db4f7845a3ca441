"""What bf16, int8 and q4_0 weights cost in quality: perplexity and greedy agreement with fp32.

    .venv/bin/python bench/bench_quality.py                      # GPT-2 (Hub or cache), WikiText-2 test
    .venv/bin/python bench/bench_quality.py --weights tiny-declaration --dataset declaration   # offline

For each --dtype (default fp32,bf16,int8,q4_0) it runs the course's own evaluation (`make eval`'s
model and step 14's perplexity, sliding windows) on the same text, and generates --steps
greedy tokens (default 128) with the run path (`make gpt2`'s engine) from the text's first
--prompt tokens; it prints the perplexity per token (4 decimals), its change against fp32, and
how many greedy tokens equal fp32's before the first that differs. No test runs this; the
figures for the book's "Make it fast" come from it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="as for make eval (default GPT-2 small)")
    p.add_argument("--dataset", default="wikitext-2", help="as for make eval (default wikitext-2)")
    p.add_argument("--text", default=None, help="a UTF-8 text file instead of --dataset")
    p.add_argument("--dtype", default="fp32,bf16,int8,q4_0")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens of the text scored (default 4096)")
    p.add_argument("--steps", type=int, default=128, help="greedy tokens compared (default 128)")
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens for the greedy run (default 32)")
    args = p.parse_args(argv)

    from gpt2course.evaluate import texts
    from gpt2course.evaluate.command import logits_function
    from gpt2course.hf import checkpoints, hub, tokenizer
    from gpt2course.run.engine import CachedEngine
    from gpt2course.run.generate import generate

    w = checkpoints.resolve_weights(args.weights, **hub.settings_from_env())
    text = texts.load(None if args.text else args.dataset, args.text)
    ids = np.asarray(tokenizer.encode(text.text)[: args.max_tokens], dtype=np.int64)
    print(f"weights: {w.description}\ntext: {text.title}: {len(ids):,} tokens scored")
    rows, greedy = [], {}
    for dtype in [d for d in args.dtype.split(",") if d]:
        logits, perplexity, _, engine = logits_function("solutions", w.path, device="cpu", quiet=True,
                                                        dtype=dtype)
        window = min(engine.config.n_positions, 1024)
        ppl = perplexity(logits, ids, window=window, stride=window // 2)
        del engine, logits
        run = CachedEngine(w.path, quiet=True, dtype=dtype)
        greedy[dtype], _ = generate(run, ids[: args.prompt].tolist(), args.steps, greedy=True,
                                    eos_token_id=None)
        rows.append((dtype, ppl, run.weight_bytes))
        del run
    base_ppl = rows[0][1]
    print(f"\n{'dtype':6} {'Linear weights':>15} {'perplexity':>11} {'vs ' + rows[0][0]:>10} "
          f"{'greedy = ' + rows[0][0]:>14}")
    for dtype, ppl, nbytes in rows:
        same = next((k for k, (a, b) in enumerate(zip(greedy[dtype], greedy[rows[0][0]])) if a != b),
                    len(greedy[dtype]))
        print(f"{dtype:6} {nbytes / 2**20:12.1f} MiB {ppl:11.4f} {100 * (ppl / base_ppl - 1):+9.2f}% "
              f"{same:>6} of {len(greedy[dtype])}")
    print("(log-perplexity differences: " + ", ".join(
        f"{d} {math.log(pp) - math.log(base_ppl):+.5f}" for d, pp, _ in rows[1:]) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
