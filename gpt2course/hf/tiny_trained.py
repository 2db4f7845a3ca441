"""A tiny GPT-2 trained here, for pictures and tests that need a model that has learned something
when GPT-2 itself cannot be downloaded: ``--weights tiny-declaration``.

It is NOT GPT-2: 4 layers of width 64 with GPT-2's vocabulary and tokenizer, trained with torch
on the one public-domain text the course ships (the Declaration of Independence,
gpt2course/evaluate/data/), which it memorises. Its logit lens shows the layers' guesses forming
on text the model knows, from a model that trains in a minute or two of CPU.

How it trains in minutes with a 50,257-token vocabulary: the text uses a few hundred distinct
tokens, and every other token's embedding row is held at zero. With GPT-2's tied head (no bias)
a zero row gives that token a logit of exactly 0, so the full softmax is the softmax over the
used tokens plus (50,257 - used) logits of 0, which the training loss adds as one column of
log(50,257 - used). That is exactly the loss of the full model under that constraint, computed
with a head of a few hundred rows; the checkpoint written is the full model (zero rows included),
a Hugging Face GPT-2 folder like any other. Deterministic: fixed seeds and batches, torch's
deterministic algorithms, two threads. Written once into the course's cache.
"""

from __future__ import annotations

import math
from pathlib import Path

NAME = "tiny-declaration"
SHAPES = dict(n_positions=64, n_embd=64, n_layer=4, n_head=4)  # it reads 64 tokens: it was trained on 64
VOCAB = 50257
STEPS, BATCH, LENGTH, SEED, LR = 800, 8, 64, 14, 1e-3


def tiny_trained_checkpoint(root: Path | None = None, *, steps: int = STEPS, quiet: bool = False) -> Path:
    """The checkpoint folder, trained on first use."""
    from gpt2course.hf.checkpoints import cache_dir, save_whole

    folder = (Path(root) if root is not None else cache_dir() / "checkpoints") / f"{NAME}-{steps}"
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2course.evaluate.texts import SHIPPED
    from gpt2course.hf import tokenizer

    stream = np.asarray(tokenizer.encode(SHIPPED.read_text(encoding="utf-8")), dtype=np.int64)
    used = np.unique(stream)                      # the tokens the text uses, sorted
    local = torch.from_numpy(np.searchsorted(used, stream))  # the text in those tokens' numbering
    background = math.log(VOCAB - len(used))      # the unused tokens' logits of 0, all together
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # fixed, so sums add up in the same order on any machine
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    try:
        no_dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
        small = GPT2LMHeadModel(GPT2Config(vocab_size=len(used), **SHAPES, **no_dropout))
        small.train()
        optimizer = torch.optim.Adam(small.parameters(), lr=LR)
        starts = np.random.default_rng(SEED).integers(0, len(local) - LENGTH, size=(steps, BATCH))
        for step in range(steps):
            batch = torch.stack([local[s:s + LENGTH] for s in starts[step]])
            logits = small(batch).logits[:, :-1]
            full = torch.cat([logits, logits.new_full((*logits.shape[:-1], 1), background)], dim=-1)
            loss = torch.nn.functional.cross_entropy(full.reshape(-1, full.shape[-1]), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not quiet and (step % 100 == 0 or step == steps - 1):
                print(f"training {NAME}: step {step + 1}/{steps}, loss {loss.item():.3f} (full vocabulary)",
                      flush=True)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, **SHAPES))  # GPT-2's own ids for <|endoftext|>
        state = {k: v for k, v in small.state_dict().items() if not k.startswith(("transformer.wte", "lm_head"))}
        wte = torch.zeros(VOCAB, SHAPES["n_embd"])
        wte[torch.from_numpy(used)] = small.transformer.wte.weight.detach()
        state["transformer.wte.weight"] = wte
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        model.tie_weights()
        model.eval()
        save_whole(model, folder)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    return folder
