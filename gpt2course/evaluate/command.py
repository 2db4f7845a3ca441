"""`python -m gpt2course eval`: the perplexity of the model the course runs, on a dataset or a file.

    make eval                                          # GPT-2 on WikiText-2's test set
    make eval ARGS='--dataset ptb --compare-hf'        # and Hugging Face's own number beside it
    make eval ARGS='--model steps --text notes.txt'    # your model and your step 14
    make eval ARGS='--dataset declaration'             # offline: the text the course ships

The text is tokenized with GPT-2's BPE into one stream and read with step 14's sliding windows
(``--window`` tokens, ``--stride`` apart: every token scored once). The model is the course's
MaxGPT2LMHeadModel compiled for any [batch, seq] (solutions/solution_11.py, or your
steps/step_11.py with ``--model steps``), and the arithmetic is step 14's ``perplexity``
(solutions/, or yours). The result is printed per token and per word, beside the GPT-2
paper's figure for that model and dataset (gpt2course/evaluate/paper.py says why the two
differ) and, with ``--compare-hf``, beside Hugging Face's own computation on the same stream
(gpt2course/hf/perplexity.py).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from gpt2course import course
from gpt2course.check.command import add_target_device
from gpt2course.errors import CheckFailure
from gpt2course.evaluate import paper, texts
from gpt2course.hf import checkpoints, hub, tokenizer
from gpt2course.hf import perplexity as hfppl
from gpt2course.hf.weights import CheckpointError

EVAL_GATE = (11, 14)  # --model steps runs your step 11 (the model) and your step 14 (the arithmetic)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def logits_function(model: str, folder, *, device: str, target: str = course.DEFAULT_TARGET, quiet: bool = False,
                    dtype: str = "fp32"):
    """(ids [batch, seq] -> logits [batch, seq, vocab], step 14's perplexity, a description).

    The model is compiled for symbolic [batch, seq], the graph ``harness.solution_model`` also
    compiles for the checks, so MAX's cache usually has it."""
    from max.experimental.tensor import Tensor

    from gpt2course.check import execute, learner
    from gpt2course.run.engine import UncachedEngine
    from gpt2course.run.gate import gate_learner_steps

    if model == "solutions":
        from solutions.solution_11 import MaxGPT2LMHeadModel
        from solutions.solution_14 import perplexity

        engine = UncachedEngine(folder, MaxGPT2LMHeadModel, device=device, quiet=quiet,
                                what="the reference MaxGPT2LMHeadModel (solutions/solution_11.py)",
                                dtype=dtype)
        desc = "reference (solutions/)" + ("" if dtype == "fp32" else f", {dtype} weights")
    elif model == "steps":
        if dtype != "fp32":
            raise CheckFailure(f"--dtype {dtype} evaluates the reference model only",
                               "use --model solutions with --dtype")
        gate_learner_steps(target, device=device, quiet=quiet, steps=EVAL_GATE)
        path11, path14 = course.step_file(11, target), course.step_file(14, target)
        cls = learner.export(learner.load(11, target), 11, "MaxGPT2LMHeadModel", path11)
        theirs = learner.export(learner.load(14, target), 14, "perplexity", path14)
        with learner.learner_errors(11, path11, "building and compiling MaxGPT2LMHeadModel"):
            engine = UncachedEngine(folder, cls, device=device, quiet=quiet)

        def perplexity(model_fn, ids, *, window, stride):
            with learner.learner_errors(14, path14, "computing the perplexity"):
                return theirs(model_fn, ids, window=window, stride=stride)
        desc = f"yours ({course.display(path11)}, {course.display(path14)})"
    else:
        raise CheckFailure(f"unknown --model {model!r}", "use --model solutions or --model steps")

    def logits(ids: np.ndarray) -> np.ndarray:
        out = engine.compiled(Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(engine.dev))
        return execute.to_host(out, "logits")
    return logits, perplexity, desc, engine


class _Progress:
    """A progress bar over the tokens scored, with tokens/s, fed one model call at a time."""

    def __init__(self, plan, label: str, show: bool) -> None:
        from tqdm import tqdm

        self.steps = [trg_len - (1 if i == 0 else 0) for i, (_, _, trg_len) in enumerate(plan)]
        self.calls = 0
        self.bar = tqdm(total=sum(self.steps), unit="tok", unit_scale=True, desc=label, disable=not show,
                        file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def wrap(self, fn):
        def counted(ids):
            out = fn(ids)
            for _ in range(np.asarray(ids).shape[0]):  # a batch of windows counts each
                if self.calls < len(self.steps):
                    self.bar.update(self.steps[self.calls])
                self.calls += 1
            return out
        return counted

    def close(self) -> None:
        self.bar.close()


def _fmt(x: float) -> str:
    return f"{x:,.2f}" if math.isfinite(x) else str(x)


def cmd_eval(args) -> int:
    try:
        text = texts.load(args.dataset, args.text)
    except texts.TextUnavailable as exc:
        _err(f"error: {exc}")
        return 2
    try:
        w = checkpoints.resolve_weights(args.weights, **hub.settings_from_env())
    except (FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return 2
    _err(f"weights: {w.description}" if w.pretrained else f"note: {w.description}")
    try:
        ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    except tokenizer.TokenizerUnavailable as exc:
        _err(f"error: {exc}")
        return 2
    if args.max_tokens is not None:
        ids = ids[:args.max_tokens]
    if ids.size < 2:
        _err(f"error: {text.title}: {ids.size} token(s) after tokenizing: a perplexity needs at least 2")
        return 2
    try:
        logits, perplexity, model_desc, engine = logits_function(args.model, w.path, device=args.device,
                                                                   target=args.target, dtype=args.dtype)
    except CheckpointError as exc:
        _err(f"error: cannot use this checkpoint: {exc}")
        return 2
    except CheckFailure as exc:
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"hint: {exc.hint}")
        return 1
    n_positions = engine.config.n_positions
    window = args.window or n_positions
    stride = args.stride or max(window // 2, 1)
    if not 0 < stride <= window <= n_positions:
        _err(f"error: need 0 < --stride ({stride}) <= --window ({window}) <= the model's {n_positions} positions")
        return 2
    plan = hfppl.window_plan(ids.size, window, stride)
    _err(f"{text.title}: {ids.size:,} GPT-2 tokens, {text.words:,} words; {len(plan)} windows of up to "
         f"{window} tokens, stride {stride}")
    bar = _Progress(plan, "perplexity", not args.quiet)
    t0 = time.perf_counter()
    try:
        ppl = float(perplexity(bar.wrap(logits), ids, window=window, stride=stride))
    except CheckFailure as exc:
        bar.close()
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"hint: {exc.hint}")
        return 1
    bar.close()
    seconds = time.perf_counter() - t0
    scored = ids.size - 1
    nll_sum = math.log(ppl) * scored if ppl > 0 and math.isfinite(ppl) else float("nan")
    out = sys.stdout
    out.write(f"model: {model_desc}; weights: {w.path}\n")
    out.write(f"text: {text.title}\n")
    out.write(f"perplexity per token: {_fmt(ppl)}   ({scored:,} tokens scored, window {window}, stride {stride}, "
              f"{scored / seconds:,.0f} tokens/s)\n")
    out.write(f"perplexity per word:  {_fmt(math.exp(nll_sum / text.words))}   (the same log-likelihood over "
              f"{text.words:,} whitespace-separated words)\n")
    if args.compare_hf:
        from gpt2course.hf import reference

        hf_bar = _Progress(plan, "Hugging Face", not args.quiet)
        theirs = hfppl.hf_sliding_window(reference.hf_model(str(w.path)), ids, window, stride,
                                         on_window=lambda end, n: hf_bar.bar.update(n))
        hf_bar.close()
        rel = abs(ppl - theirs.perplexity) / theirs.perplexity
        out.write(f"Hugging Face, same stream and windows: {_fmt(theirs.perplexity)} per token "
                  f"(relative difference {rel:.1e})\n")
    name = args.weights if args.weights else ("gpt2" if w.pretrained else None)
    fig = paper.figure(name, text.key or "") if args.max_tokens is None else None
    if fig is not None:
        size, value = fig
        out.write(f"GPT-2 paper ({size}, zero-shot, Table 3): {value:.2f}; not the same measurement: "
                  f"{paper.LAMBADA_CAVEAT if text.key == 'lambada' else paper.CAVEAT}\n")
    elif text.key in paper.TABLE_3 and name not in paper.SIZES:
        out.write("GPT-2 paper: no figure for these weights (Table 3 has gpt2, gpt2-medium, gpt2-large, gpt2-xl)\n")
    out.flush()
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="perplexity of the model on a dataset or a text file",
                       description="Perplexity of GPT-2 as the course runs it, with step 14's sliding "
                       "windows, beside the GPT-2 paper's figure and (--compare-hf) Hugging Face's.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None,
                     help=f"{', '.join(texts.DATASETS)} (default wikitext-2; through Hugging Face's "
                     "datasets, cached after the first download; declaration ships with the course)")
    src.add_argument("--text", default=None, help="a UTF-8 text file to score instead")
    p.add_argument("--weights", default=None, help="as for gpt2: gpt2, distilgpt2, gpt2-medium, ..., a "
                   "Hub repo id, a checkpoint folder, or seeded-small / seeded-124m")
    p.add_argument("--model", default="solutions", choices=["solutions", "steps"],
                   help="solutions: the reference model and step 14 (default); steps: your step 11 "
                   "model and your step 14 perplexity (their checks must pass)")
    p.add_argument("--window", type=int, default=None, help="tokens per model call (default: the model's "
                   "context, 1024 for GPT-2)")
    p.add_argument("--stride", type=int, default=None, help="tokens each window moves on (default window / 2)")
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens (a quick look)")
    p.add_argument("--compare-hf", action="store_true",
                   help="also compute Hugging Face's sliding-window perplexity on the same stream")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_target_device(p)  # --target: where --model steps finds your step files
    from gpt2course.run.command import add_dtype

    add_dtype(p)  # the quality each dtype costs (book: Make it fast)
    p.set_defaults(func=cmd_eval)
