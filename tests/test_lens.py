"""`lens` (gpt2course/evaluate/lens.py): every layer's lens equals Hugging Face's hidden state of that
layer put through Hugging Face's own ln_f and lm_head, the last layer's equals the model's logits,
and the command prints the table and writes the picture (PNG and SVG).

MAX compiles one graph here, the lens (the reference GPT-2 with every block read out) on the
seeded "small" checkpoint, for [batch, seq]; the command's run in the same test then loads it from
MAX's cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt2course import cli
from gpt2course.evaluate import lens as lens_mod
from gpt2course.hf import checkpoints, reference, tokenizer

PROMPT = "We hold these truths to be self-evident, that all men"


@pytest.fixture(scope="module")
def small():
    return checkpoints.seeded_checkpoint("small")


@pytest.fixture(scope="module")
def ours(small):
    return lens_mod.LensModel(small, quiet=True)(tokenizer.encode(PROMPT))


@pytest.fixture(scope="module")
def theirs(small):
    """Hugging Face's lens: output_hidden_states through its ln_f and lm_head. Its last hidden state
    already has ln_f applied (GPT2Model does it before returning), so that one goes to lm_head alone."""
    model = reference.hf_model(str(small))
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, use_cache=False)
        states = out.hidden_states[1:]  # after block 0, 1, ..., the last one after ln_f
        per_layer = [model.lm_head(model.transformer.ln_f(h)) for h in states[:-1]] + [model.lm_head(states[-1])]
    return np.stack([x[0].numpy() for x in per_layer]), out.logits[0].numpy()


def test_every_layer_equals_hugging_face(ours, theirs):
    lens, _ = theirs
    assert ours.logits.shape == lens.shape  # [n_layer, seq, vocab]
    for layer in range(lens.shape[0]):
        np.testing.assert_allclose(ours.logits[layer], lens[layer], atol=2e-4, rtol=1e-4,
                                   err_msg=f"block {layer}'s lens")


def test_last_layer_is_the_models_logits(ours, theirs):
    _, logits = theirs
    np.testing.assert_allclose(ours.logits[-1], logits, atol=2e-4, rtol=1e-4)


def test_top_tokens_and_probabilities_equal_hugging_face(ours, theirs):
    lens, _ = theirs
    probs = torch.softmax(torch.from_numpy(lens).double(), dim=-1).numpy()
    token, prob = ours.top()
    np.testing.assert_allclose(prob, probs.max(-1), atol=1e-5)
    ranked = np.sort(probs, axis=-1)
    clear = ranked[..., -1] - ranked[..., -2] > 1e-4  # where the top token is not a near-tie
    assert clear.any()
    np.testing.assert_array_equal(token[clear], probs.argmax(-1)[clear])


def test_the_command_prints_the_table_and_writes_the_picture(tmp_path, capsys, ours):
    code = cli.main(["lens", "--prompt", PROMPT, "--weights", "seeded-small", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "a lens of random weights shows noise" in err  # seeded weights are named for what they are
    lines = out.splitlines()
    assert lines[0].split()[0] == "input" and lines[1].startswith("block 01") and lines[2].startswith("block 00")
    token, prob = ours.top()
    first = lens_mod._token_text(token[0, 0])  # block 0, position 0, as the table writes it
    assert f"{first} {prob[0, 0]:.2f}" in lines[2]
    png, svg = tmp_path / "lens.png", tmp_path / "lens.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "block 1" in text


def test_an_empty_prompt_is_one_line(capsys):
    assert cli.main(["lens", "--prompt", "", "--weights", "seeded-small"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --prompt is empty")
