"""Step 13 check: the KV cache.

The two helpers first (TODO 1-2); then generate_with_cache must call the model as a cache
needs and stop at end-of-text as step 12's loop does (NumPy stand-in models: no compile, so a
broken loop fails in seconds, before the model is compiled). Then the cached model
(MaxGPT2LMHeadModelWithCache) must give, at every position, the logits Hugging Face's GPT-2
gives without a cache: for the prompt (prefill), for each token decoded one at a time, and for
several new tokens at once after a cache; and generate_with_cache must produce, greedily,
exactly Hugging Face's generate(do_sample=False) tokens. All on the 124M-shaped seeded
checkpoint: the cached model is compiled once (about as long as step 11's
model; cached afterwards).
"""

import functools

import numpy as np

from gpt2course.hf.weights import course_config
from gpt2course.check import execute, harness, wire
from gpt2course.hf import reference
from gpt2course.check.harness import ATOL
from gpt2course.errors import CheckFailure
from gpt2course.check.compare import compare, expect_equal

STEP = 13
CKPT = "124m"
EXPORT = "MaxGPT2LMHeadModelWithCache"
PROMPT = 4          # tokens in the prefill
DECODE_UNTIL = 9    # then one token at a time, positions 4..8
SEQ = 12            # then positions 9..11 in one call, after the cache
NEW_TOKENS = 32     # greedy generation length
TOL = 5 * ATOL      # 12 layers of float32 in a different order than torch


def make(cls):
    _, config, _ = harness.checkpoint(CKPT)
    return cls(course_config(config))


@functools.lru_cache(maxsize=1)
def wts():
    return harness.max_weights("", CKPT)


def ids(seq=SEQ):
    _, config, _ = harness.checkpoint(CKPT)
    return harness.input_ids(config.vocab_size, 2, seq)


def helpers_ok(step):
    """The model checks need the two helpers; if one failed, they are skipped (no compile)."""
    harness.once(step, "positions", lambda: _positions(step))
    harness.once(step, "mask", lambda: _mask(step))


def model_fn(step):
    """The learner's cached model, compiled once in the worker, as (ids, cache | None) ->
    (logits, cache); the cache stays in the worker."""
    helpers_ok(step)
    harness.parameters_match(step, EXPORT, make, wts(), EXPORT)

    def fn():
        _, config, _ = harness.checkpoint(CKPT)
        module = harness.build_module(step, EXPORT, make, EXPORT)
        execute.say(f"  compiling {EXPORT} with MAX (first time ~2-4 min on a laptop CPU; "
                    "unchanged code is cached and takes seconds) ...")
        with step.errors(f"compiling {EXPORT}"):
            compiled = step.remote.cached_model(module, course_config(config), wts(), what=EXPORT,
                                                doing=f"compiling {EXPORT}")

        def run(x, cache):
            with step.errors(f"running {EXPORT}"):
                return compiled(x, cache)
        return run, compiled
    return harness.once(step, "compiled", fn)


def hf_logits():
    folder, _, _ = harness.checkpoint(CKPT)
    return reference.capture(folder, ids()).logits


def hf_trap_logits(token_pos: int, *, position: int | None, with_cache: bool) -> np.ndarray:
    """Hugging Face's logits for the token at ``token_pos`` fed as one decode step, but with a
    chosen mistake: its position id replaced, or no cache at all."""
    import torch
    from transformers import DynamicCache

    folder, _, _ = harness.checkpoint(CKPT)
    model = reference.hf_model(str(folder))
    x = torch.from_numpy(ids())
    with torch.no_grad():
        past = DynamicCache()
        if with_cache:
            model(x[:, :token_pos], past_key_values=past, use_cache=True)
        pos = token_pos if position is None else position
        out = model(x[:, token_pos:token_pos + 1], past_key_values=past, use_cache=True,
                    position_ids=torch.full((x.shape[0], 1), pos, dtype=torch.long))
    return out.logits.float().numpy()


def run_sequence(step):
    """Prefill 4 tokens, decode positions 4..8 one by one, then 9..11 in one call."""
    def fn():
        model, _ = model_fn(step)
        x = ids()
        outs = {}
        logits, cache = model(x[:, :PROMPT], None)
        outs["prefill"] = logits
        for pos in range(PROMPT, DECODE_UNTIL):
            logits, cache = model(x[:, pos:pos + 1], cache)
            outs[pos] = logits
        logits, cache = model(x[:, DECODE_UNTIL:], cache)
        outs["chunk"] = logits
        return outs
    return harness.once(step, "sequence", fn)


def _positions(step):
    fn = step.get("new_positions")
    with step.errors("new_positions(past_length=3, seq_length=4)"):
        got = harness.arrays([fn(3, 4, device=step.device)], "new_positions")[0]
    expect_equal("new_positions(past_length=3, seq_length=4)", got.astype(np.int64),
                 np.array([3, 4, 5, 6]),
                 "the new tokens come after the 3 cached ones: positions 3, 4, 5, 6 (not 0, 1, 2, 3)")
    return got


def _mask(step):
    fn = step.get("cached_causal_mask")
    with step.errors("cached_causal_mask(past_length=2, seq_length=3)"):
        got = harness.arrays([fn(2, 3, dtype=wire.dtype("float32"), device=step.device)],
                             "cached_causal_mask")[0]
    want = np.triu(np.full((3, 5), -np.inf, dtype=np.float32), k=3)
    compare("cached_causal_mask(past_length=2, seq_length=3)", got, want, atol=0, rtol=0, traps={
        "no offset": (np.triu(np.full((3, 5), -np.inf, dtype=np.float32), k=1),
                      "the queries' positions start at 0; new token i sits at past_length + i"),
        "no mask": (np.zeros((3, 5), dtype=np.float32), "nothing is masked: new tokens see the future"),
    }, hint="row i (position past_length + i) sees columns 0 .. past_length + i: "
            "[[0, 0, 0, -inf, -inf], [0, 0, 0, 0, -inf], [0, 0, 0, 0, 0]]")
    return got


def test_positions(step):
    """new_positions counts on from the cache length (TODO 1)"""
    harness.once(step, "positions", lambda: _positions(step))


def test_mask(step):
    """cached_causal_mask lets each new token see the cache and the new tokens up to itself (TODO 2)"""
    harness.once(step, "mask", lambda: _mask(step))


class RecordingModel:
    """A NumPy stand-in for the cached model: the next token is always (last token + 1) % 11,
    and every call is recorded with the cache it was given (each call returns a new one, a
    token of its own)."""

    VOCAB = 11

    def __init__(self):
        self.calls = []
        self.returned = []

    def __call__(self, ids, cache):
        ids = np.asarray(ids)
        self.calls.append((tuple(ids.shape), cache))
        logits = np.zeros((ids.shape[0], ids.shape[1], self.VOCAB), dtype=np.float32)
        rows = np.arange(ids.shape[0])
        logits[rows, -1, (ids[:, -1] + 1) % self.VOCAB] = 1.0
        self.returned.append(f"cache #{len(self.returned) + 1}")  # a fresh cache every call
        return logits, self.returned[-1]


def test_generate_calls(step):
    """generate_with_cache runs the prompt once, then only the newest token with the latest cache"""
    generate = step.get("generate_with_cache")
    model = RecordingModel()
    prompt = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    with step.errors("generate_with_cache(model, ids, 4, greedy=True)"):
        got = np.asarray(generate(wire.callback("stand-in model", model), prompt, 4, greedy=True))
    shapes = [shape for shape, _ in model.calls]
    if not shapes or shapes[0] != (2, 3) or model.calls[0][1] is not None:
        raise CheckFailure(f"the first model call got ids of shape {list(shapes[0]) if shapes else None} and "
                           f"cache {model.calls[0][1] if shapes else None!r}; the prefill runs the whole "
                           "prompt [2, 3] with no cache (None)", "TODO 7: logits, cache = model(ids, None)")
    for i, shape in enumerate(shapes[1:], 2):
        if shape != (2, 1):
            raise CheckFailure(f"model call {i} got ids of shape {list(shape)}; a decode step feeds only "
                               "the token just chosen, [batch, 1]: the rest is in the cache",
                               "TODO 8: model(next_token[:, None], cache)")
    for i in range(1, len(model.calls)):
        if model.calls[i][1] != model.returned[i - 1]:
            raise CheckFailure(f"model call {i + 1} was not given the cache that call {i} returned; "
                               "each call returns the grown cache, and the next call needs that one",
                               "TODO 8: logits, cache = model(next_token[:, None], cache)")
    if len(shapes) != 4:
        raise CheckFailure(f"generating 4 tokens called the model {len(shapes)} times; it takes 4 calls: "
                           "the prefill (which gives the first token) and 3 decode steps",
                           "the last chosen token needs no further model call")
    expect_equal("generate_with_cache with a model that counts up", got,
                 np.array([[1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9, 10]]),
                 "append each chosen token to the ids and return the prompt with the new tokens")


EOS = 50256  # GPT-2's <|endoftext|>


class EosModel:
    """A greedy NumPy stand-in for the cached model: the row whose first prompt id is f emits
    100, 101, ... and EOS as new token stops[f]. The rows' first ids and how many new tokens
    were fed travel in the cache, as a real cache carries what the model has seen."""

    VOCAB = 50257

    def __init__(self, stops: dict[int, int]):
        self.stops = stops

    def __call__(self, ids, cache):
        ids = np.asarray(ids)
        first, fed = (ids[:, 0].copy(), 0) if cache is None else (cache[0], cache[1] + ids.shape[1])
        logits = np.zeros((ids.shape[0], ids.shape[1], self.VOCAB), dtype=np.float32)
        for r in range(ids.shape[0]):
            logits[r, -1, EOS if fed == self.stops[int(first[r])] else 100 + fed] = 10.0
        return logits, (first, fed)


def expected_eos(stops, prompt, max_new):
    """Hugging Face's semantics: a finished row continues with EOS; stop when all rows are finished."""
    width = min(max_new, max(stops[int(p[0])] for p in prompt) + 1)
    return np.array([list(p) + [100 + n if n < stops[int(p[0])] else EOS for n in range(width)]
                     for p in prompt], dtype=np.int64)


def test_generate_eos(step):
    """generate_with_cache stops at end-of-text (50256) as step 12 does: a finished row gets only EOS, the loop ends when all are"""
    generate = step.get("generate_with_cache")
    cases = [("one row, EOS as the 3rd new token", {7: 2}, [[7, 8]], 10),
             ("three rows ending at new tokens 2, 4 and 6", {7: 1, 8: 3, 9: 5}, [[7, 1], [8, 1], [9, 1]], 10),
             ("max_new_tokens reached before EOS", {7: 8}, [[7, 1]], 4)]
    hint = ("as step 12's loop: keep a `finished` mask; a row that produced eos_token_id gets only "
            "eos_token_id from then on (np.where); stop once every row is finished")
    for label, stops, prompt, max_new in cases:
        prompt = np.array(prompt, dtype=np.int64)
        with step.errors(f"generate_with_cache(model, ids, {max_new}, eos_token_id={EOS}, greedy=True)"):
            got = np.asarray(generate(wire.callback("stand-in model", EosModel(stops)), prompt, max_new,
                                      eos_token_id=EOS, greedy=True))
        want = expected_eos(stops, prompt, max_new)
        if np.array_equal(got, want):
            continue
        n_got, n_want = got.shape[-1] - prompt.shape[1], want.shape[1] - prompt.shape[1]
        new = got[:, prompt.shape[1]:] if got.ndim == 2 else np.zeros((0, 0))
        after_eos = [r for r in range(len(new)) if EOS in new[r].tolist()
                     and np.any(new[r, new[r].tolist().index(EOS):] != EOS)]
        if got.ndim == 2 and n_got == max_new and n_want < max_new and len(prompt) > 1 and after_eos:
            why = (f"rows {after_eos} kept generating after their end-of-text and the loop ran all "
                   f"{max_new} steps: it stops only if every row produces EOS at the SAME step. A row "
                   "that produced EOS is finished for good")
        elif got.ndim == 2 and n_got == max_new and n_want < max_new:
            why = "the loop ignores eos_token_id: it must stop once every row has produced it"
        elif got.ndim == 2 and 0 < n_got < n_want and np.any(new[:, -1] == EOS):
            why = ("the loop stops as soon as ONE row produced EOS: the other rows had not finished "
                   "(stop when every row has produced it)")
        elif got.ndim == 2 and n_got == n_want - 1:
            why = "the EOS token itself is not in the output: append it, then stop"
        elif got.ndim == 2 and after_eos:
            r = after_eos[0]
            at = new[r].tolist().index(EOS)
            why = (f"row {r} has token {int(new[r, at:][new[r, at:] != EOS][0])} after its end-of-text "
                   f"(new token {at}): a finished row must emit only eos_token_id")
        else:
            why = f"{n_got} new tokens, expected {n_want}"
        raise CheckFailure(f"generate_with_cache, {label}: {why}\n  expected {want.tolist()}\n"
                           f"  got      {got.tolist()}", hint)
    with step.errors("generate_with_cache(model, ids, 5, eos_token_id=None, greedy=True)"):
        got = np.asarray(generate(wire.callback("stand-in model", EosModel({7: 1})), np.array([[7, 1]]), 5,
                                  greedy=True))
    expect_equal("generate_with_cache without eos_token_id: ids shape", list(got.shape), [1, 7],
                 "with eos_token_id=None never stop early: always max_new_tokens new tokens")


def test_parameters(step):
    """the cached model's parameters carry Hugging Face's names and shapes (the same checkpoint loads)"""
    harness.parameters_match(step, EXPORT, make, wts(), EXPORT,
                            hint="the cached model has the same parameters as step 11's: "
                                 "transformer.wte, transformer.wpe, transformer.h.N..., transformer.ln_f, lm_head")


def test_prefill(step):
    """prefill (the prompt, empty cache): logits equal Hugging Face's at every prompt position"""
    out = run_sequence(step)["prefill"]
    compare(f"logits of the {PROMPT}-token prompt", out, hf_logits()[:, :PROMPT], atol=TOL, rtol=TOL,
            hint="with an empty cache the model must compute exactly step 11's logits: "
                 "check the attention (TODO 3, 4) and the positions (TODO 5)")


def test_decode(step):
    """decode, one token at a time: logits equal the uncached model's at every position"""
    outs = run_sequence(step)
    want = hf_logits()
    for pos in range(PROMPT, DECODE_UNTIL):
        traps = {}
        if pos == PROMPT:
            traps = {
                "position 0": (lambda: hf_trap_logits(pos, position=0, with_cache=True),
                               "the new token was embedded at position 0; it sits at the cache length "
                               "(TODO 5: new_positions(past_length, seq_length))"),
                "no cache": (lambda: hf_trap_logits(pos, position=0, with_cache=False),
                             "the new token saw only itself: the cache did not reach it (is the "
                             "grown cache returned and passed on? TODO 3, 6)"),
            }
        compare(f"logits of the token at position {pos} (decode step {pos - PROMPT + 1}, cache length {pos})",
                outs[pos], want[:, pos:pos + 1], atol=TOL, rtol=TOL, traps=traps,
                hint="a decode step feeds one token and the cache: its position is the cache length "
                     "(TODO 5), its key and value are appended to the cache (TODO 3) and every block's "
                     "grown cache is returned (TODO 6)")


def test_chunk_after_cache(step):
    """several new tokens at once after a cache: logits equal the uncached model's"""
    out = run_sequence(step)["chunk"]
    compare(f"logits of positions {DECODE_UNTIL}..{SEQ - 1} fed together after a cache of {DECODE_UNTIL}",
            out, hf_logits()[:, DECODE_UNTIL:], atol=TOL, rtol=TOL,
            hint="among several new tokens the causal mask still applies, shifted by the cache "
                 "length: cached_causal_mask(past_length, seq_length) (TODO 2, 4)")


def test_generate_greedy(step):
    """greedy generate_with_cache equals Hugging Face generate(do_sample=False), 32 new tokens"""
    _, model = model_fn(step)
    generate = step.get("generate_with_cache")
    folder, _, _ = harness.checkpoint(CKPT)
    prompt = ids(7)
    with step.errors("generate_with_cache(model, ids, 32, greedy=True)"):
        got = generate(model, prompt, NEW_TOKENS, greedy=True)
    got = np.asarray(got)
    if got.shape != (prompt.shape[0], prompt.shape[1] + NEW_TOKENS):
        raise CheckFailure(f"generate_with_cache returned shape {list(got.shape)}; expected "
                           f"{[prompt.shape[0], prompt.shape[1] + NEW_TOKENS]} (the prompt and "
                           f"{NEW_TOKENS} new tokens)",
                           "append exactly one token per step and return the prompt with them")
    expect_equal("greedy tokens with the cache", got, reference.hf_generate_greedy(folder, prompt, NEW_TOKENS),
                 "prefill once (TODO 7), then feed only the newest token with the cache (TODO 8)")
