"""Generation: prefill once, then one token per decode step, the prompt fitted to the context,
and the figures of a run (prefill time, decode speed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gpt2course.hf.tokenizer import EOS_TOKEN_ID


@dataclass
class Stats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    stopped: str = ""
    weights: str = ""
    device: str = ""
    model: str = ""
    notices: list[str] = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        # the first new token comes from the prefill; decode makes the others
        steps = max(self.new_tokens - 1, 0)
        return steps / self.decode_s if steps and self.decode_s > 0 else float("nan")

    def line(self) -> str:
        tps = self.decode_tokens_per_s
        return (f"[prompt {self.prompt_tokens} tokens | {self.new_tokens} new tokens "
                f"({self.stopped}) | prefill {self.prefill_s * 1000:.0f} ms | decode "
                f"{'-' if tps != tps else f'{tps:.1f}'} tokens/s | model: {self.model} | "
                f"weights: {self.weights} | device: {self.device}]")


def fit_context(prompt_ids: Sequence[int], max_new_tokens: int, n_positions: int
                ) -> tuple[list[int], int, list[str]]:
    """Makes prompt + new tokens fit in the context; says what it changed, never raises.

    A prompt that fits is kept whole and the new-token budget shrinks to fit. A
    prompt that does not fit keeps its last tokens, leaving room for the new
    ones (at most half the context).
    """
    ids = list(prompt_ids)
    notices = []
    if max_new_tokens < 0:
        raise ValueError("--max-new-tokens must be >= 0")
    if len(ids) >= n_positions:
        budget = min(max_new_tokens, n_positions // 2)
        keep = n_positions - max(budget, 1)
        notices.append(f"the prompt has {len(ids)} tokens but the model's context holds "
                       f"{n_positions}: keeping its last {keep} tokens")
        ids = ids[-keep:]
        max_new_tokens = min(max_new_tokens, n_positions - len(ids))
    elif len(ids) + max_new_tokens > n_positions:
        room = n_positions - len(ids)
        notices.append(f"{len(ids)} prompt tokens + {max_new_tokens} new would exceed the "
                       f"context of {n_positions}: generating at most {room} new tokens")
        max_new_tokens = room
    return ids, max_new_tokens, notices


def generate(engine, prompt_ids: Sequence[int], max_new_tokens: int, *,
             greedy: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None,
             eos_token_id: int | None = EOS_TOKEN_ID,
             sample_fn: Callable | None = None,
             on_token: Callable[[int], None] | None = None) -> tuple[list[int], Stats]:
    """Prefill once, then one token per decode step; calls ``on_token`` as each token is chosen.

    Returns (the new token ids, figures). Stops at ``eos_token_id`` (which is
    returned, not printed by run.py) or after ``max_new_tokens``.
    """
    if sample_fn is None:
        from solutions.solution_12 import sample_next_token as sample_fn
    if not prompt_ids:
        prompt_ids = [EOS_TOKEN_ID]  # GPT-2 starts unconditioned text after <|endoftext|>
    prompt_ids, max_new_tokens, notices = fit_context(prompt_ids, max_new_tokens,
                                                      engine.config.n_positions)
    stats = Stats(prompt_tokens=len(prompt_ids), notices=notices, device=engine.device_name)
    rng = np.random.default_rng(seed)
    sampling = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
    new: list[int] = []
    if max_new_tokens == 0:
        stats.stopped = "no room"
        return new, stats
    t0 = time.perf_counter()
    # the cache is allocated once, for the prompt and every new token (an in-place cache)
    logits, cache = engine.prefill(np.asarray([prompt_ids], dtype=np.int64),
                                   capacity=len(prompt_ids) + max_new_tokens)
    token = int(sample_fn(logits, **sampling)[0])
    stats.prefill_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    while True:
        new.append(token)
        if on_token is not None:
            on_token(token)
        if eos_token_id is not None and token == eos_token_id:
            stats.stopped = "end of text"
            break
        if len(new) >= max_new_tokens:
            stats.stopped = "token budget"
            break
        logits, cache = engine.decode(np.asarray([[token]], dtype=np.int64), cache)
        token = int(sample_fn(logits, **sampling)[0])
    stats.decode_s = time.perf_counter() - t1
    stats.new_tokens = len(new)
    return new, stats
