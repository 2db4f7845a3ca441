"""`python -m gpt2course gpt2`: text in, text out, with a KV cache (offline once GPT-2 is cached).

    make gpt2 ARGS='--prompt "Hello, my name is" --greedy'
    make gpt2                                  # interactive: one prompt per line
    make gpt2 ARGS='--model steps'             # your own model (steps 10-12 must pass)
    make gpt2 ARGS='--dtype int8'              # weights in 1 byte instead of 4 (book: Make it fast)

Tokens are printed as they are produced; each answer ends with a line of
figures (prompt and new tokens, prefill time, decode speed, weights, device).
"""

from __future__ import annotations

import argparse
import sys

from gpt2course.check.command import add_target_device
from gpt2course.errors import CheckFailure
from gpt2course.hf import checkpoints, tokenizer
from gpt2course.hf.weights import CheckpointError
from gpt2course.run import engine as run_engine
from gpt2course.run.generate import generate
from gpt2course.hf import hub


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _answer(engine, sample_fn, model_desc: str, weights_desc: str, prompt: str, args) -> int:
    prompt_ids = tokenizer.encode(prompt)
    stream = tokenizer.StreamDecoder()
    out = sys.stdout

    def on_token(token: int) -> None:
        if token == tokenizer.EOS_TOKEN_ID:
            return
        text = stream.push(token)
        if text:
            out.write(text)
            out.flush()

    out.write(prompt)
    out.flush()
    interrupted = False
    try:
        new, stats = generate(
            engine, prompt_ids, args.max_new_tokens, greedy=args.greedy,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
            sample_fn=sample_fn, on_token=on_token)
    except KeyboardInterrupt:
        interrupted = True
        new, stats = [], None
    out.write(stream.flush() + "\n")
    if interrupted:
        out.write("[interrupted]\n")
        out.flush()
        return 130
    for notice in stats.notices:
        _err(f"note: {notice}")
    stats.weights, stats.model = weights_desc, model_desc
    if args.show_ids:
        out.write("ids: " + " ".join(str(t) for t in new) + "\n")
    out.write(stats.line() + "\n")
    out.flush()
    return 0


def cmd_gpt2(args) -> int:
    if args.max_new_tokens < 0:
        _err("error: --max-new-tokens must be 0 or more")
        return 2
    if not args.greedy and args.temperature <= 0:
        _err("error: --temperature must be > 0 (or use --greedy)")
        return 2
    try:
        w = checkpoints.resolve_weights(args.weights, **hub.settings_from_env())
    except (FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return 2
    if w.pretrained:
        _err(f"weights: {w.description}")
    else:
        _err(f"note: {w.description}")
    try:
        tokenizer.load()
        engine, sample_fn, model_desc = run_engine.load_engine(args.model, w.path, device=args.device,
                                                               dtype=args.dtype)
    except CheckpointError as exc:
        _err(f"error: cannot use this checkpoint: {exc}")
        return 2
    except tokenizer.TokenizerUnavailable as exc:
        _err(f"error: {exc}")
        return 2
    except CheckFailure as exc:
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"hint: {exc.hint}")
        return 1
    if engine.config.vocab_size < tokenizer.VOCAB_SIZE:
        _err(f"error: the checkpoint's vocabulary has {engine.config.vocab_size} tokens; "
             f"GPT-2's tokenizer needs {tokenizer.VOCAB_SIZE}")
        return 2
    weights_desc = "pretrained GPT-2" if w.pretrained and args.weights is None else (
        str(w.path) if w.pretrained else "seeded random (text is noise)")
    if args.prompt is not None:
        return _answer(engine, sample_fn, model_desc, weights_desc, args.prompt, args)
    _err("Type a prompt and press Enter; an empty line or Ctrl-D quits.")
    while True:
        try:
            prompt = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not prompt.strip():
            return 0
        _answer(engine, sample_fn, model_desc, weights_desc, prompt, args)


def register(sub) -> None:
    p = sub.add_parser("gpt2", help="run GPT-2: text in, text out (KV cache, offline)",
                       description="Generate text with GPT-2 in MAX, offline. With --prompt it answers "
                       "once; without, it reads prompts line by line (empty line or Ctrl-D quits).")
    p.add_argument("--prompt", help="the text to continue (omit for an interactive prompt)")
    p.add_argument("--max-new-tokens", type=int, default=50, help="most tokens to add (default 50)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="below 1 sharper, above 1 more random (default 1.0)")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k best tokens (default 50; 0: all)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep tokens up to this total probability")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (deterministic)")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same text")
    p.add_argument("--weights", default=None,
                   help="gpt2, distilgpt2, gpt2-medium, gpt2-large, gpt2-xl, a Hub repo id, a "
                   "checkpoint folder, or seeded-124m / seeded-small (default: GPT-2 from the "
                   "Hugging Face cache, else downloaded when the Hub answers, else seeded-124m)")
    add_target_device(p, target=False)
    p.add_argument("--model", default="solutions", choices=["solutions", "steps"],
                   help="solutions: the reference model with a KV cache (default); steps: your "
                   "MaxGPT2LMHeadModel and sampling from steps/ (steps 10-12 must pass)")
    add_dtype(p)
    p.add_argument("--show-ids", action="store_true", help="also print the new token ids")
    p.set_defaults(func=cmd_gpt2)


def add_dtype(p) -> None:
    """--dtype, shared by `make gpt2`, `make serve` and `make bench`."""
    from gpt2course.run.precision import DTYPES

    p.add_argument("--dtype", default="fp32", choices=DTYPES,
                   help="how the reference model's Linear weights are stored: fp32 (default), bf16 "
                   "(half the bytes), int8 (a quarter, one scale per row; step 15) or q4_0 (4 "
                   "bits, one scale per 32 weights; MAX's quantized matmul). Book: 'Make it fast'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpt2")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gpt2", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
