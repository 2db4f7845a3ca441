"""Hugging Face's reference numbers, kept on disk between checks (gpt2course/hf/reference.py):
what a check reads back is what Hugging Face computes, and anything that would make it stale
or unreadable makes the judge compute it again."""

import shutil

import numpy as np
import pytest

from gpt2course.check import harness
from gpt2course.hf import checkpoints, reference, weights


@pytest.fixture
def folder(tmp_path):
    """A copy of the public small checkpoint, free to be rewritten."""
    dest = tmp_path / "ckpt"
    shutil.copytree(checkpoints.seeded_checkpoint("small"), dest)
    return dest


def _ids(seed=0):
    return reference.fixed_input_ids(50257, seed=seed)


def _fresh(folder, ids) -> reference.Capture:
    reference._capture_cached.cache_clear()
    reference._stored_capture.cache_clear()
    return reference.capture(folder, ids)


def _stored(folder, ids, store) -> reference.Capture:
    reference._capture_cached.cache_clear()
    reference._stored_capture.cache_clear()
    return reference.capture(folder, ids, store)


def _same(a: reference.Capture, b: reference.Capture) -> None:
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert sorted(a.inputs) == sorted(b.inputs) and sorted(a.outputs) == sorted(b.outputs)
    for name in a.inputs:
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name], err_msg=name)
        np.testing.assert_array_equal(a.outputs[name], b.outputs[name], err_msg=name)
    assert len(a.hidden_states) == len(b.hidden_states) == 3
    for x, y in zip(a.hidden_states, b.hidden_states):
        np.testing.assert_array_equal(x, y)


def _no_hugging_face(monkeypatch):
    def refuse(*args):
        raise AssertionError("Hugging Face ran: the stored capture was not used")
    monkeypatch.setattr(reference, "_capture_cached", refuse)


def test_a_stored_capture_is_what_hugging_face_computes_and_is_read_back(folder, tmp_path, monkeypatch):
    store = tmp_path / "store"
    fresh = _fresh(folder, _ids())
    _same(_stored(folder, _ids(), store), fresh)
    assert len(list(store.glob("*.npz"))) == 1
    _no_hugging_face(monkeypatch)
    reference._stored_capture.cache_clear()
    _same(reference.capture(folder, _ids(), store), fresh)


def test_other_ids_or_a_rewritten_checkpoint_are_computed_again(folder, tmp_path, monkeypatch):
    store = tmp_path / "store"
    _stored(folder, _ids(), store)
    other = _stored(folder, _ids(seed=1), store)
    assert len(list(store.glob("*.npz"))) == 2
    assert not np.array_equal(other.logits, _fresh(folder, _ids()).logits)
    # the same file names, other weights: a stale capture would give the old logits
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["transformer.ln_f.bias"] = tensors["transformer.ln_f.bias"] + 1.0
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    changed = _stored(folder, _ids(), store)
    _same(changed, _fresh(folder, _ids()))
    assert len(list(store.glob("*.npz"))) == 3


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_an_unreadable_stored_capture_is_computed_again_and_replaced(folder, tmp_path, damage):
    store = tmp_path / "store"
    fresh = _stored(folder, _ids(), store)
    [path] = store.glob("*.npz")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a capture" * 100,
                      "empty": b""}[damage])
    _same(_stored(folder, _ids(), store), fresh)
    assert path.read_bytes() == data
    assert [p.name for p in store.iterdir()] == [path.name]  # no temporary file left behind


def test_a_graded_run_keeps_no_capture_on_disk(monkeypatch, tmp_path):
    """A graded run's checkpoint is secret: its numbers must not land in a shared cache."""
    seen = []
    monkeypatch.setattr(reference, "capture", lambda folder, ids, store=None: seen.append(store))
    monkeypatch.setattr(harness, "checkpoint", lambda name="small": (tmp_path, _Config(), None))
    monkeypatch.setattr(harness, "_secret", None)
    harness.capture()
    monkeypatch.setattr(harness, "_secret", (7, str(tmp_path)))
    harness.capture()
    assert seen == [checkpoints.cache_dir() / "references", None]


class _Config:
    vocab_size = 50257


# --------------------------------------------------------------------------- GPT2Config()'s defaults (step 01)

FIELDS = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon"]


def test_stored_config_defaults_are_transformers_and_are_read_back(tmp_path, monkeypatch):
    import transformers

    hf = transformers.GPT2Config()
    want = {f: getattr(hf, f) for f in FIELDS}
    store = tmp_path / "store"
    assert reference.config_defaults(FIELDS, store) == want == reference.config_defaults(FIELDS)
    [path] = store.glob("gpt2config-*.json")
    # read back, not recomputed: a stored value is what the next check gets
    path.write_text(path.read_text().replace("1024", "2048"))
    assert reference.config_defaults(FIELDS, store)["n_positions"] == 2048
    # another transformers version is another file
    monkeypatch.setattr(reference.metadata, "version", lambda name: "0.0-other")
    assert reference.config_defaults(FIELDS, store) == want
    assert len(list(store.glob("gpt2config-*.json"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "empty", "a field missing", "a list"])
def test_unreadable_config_defaults_are_computed_again_and_replaced(tmp_path, damage):
    store = tmp_path / "store"
    want = reference.config_defaults(FIELDS, store)
    [path] = store.glob("*.json")
    path.write_text({"garbage": "{not json", "empty": "", "a field missing": '{"n_embd": 768}',
                     "a list": "[1, 2]"}[damage])
    assert reference.config_defaults(FIELDS, store) == want
    assert [p.name for p in store.iterdir()] == [path.name]  # replaced, no temporary file left


def test_a_graded_run_reads_no_stored_config_defaults(monkeypatch, tmp_path):
    """A graded judge computes them: nothing a check on this machine wrote decides a grade."""
    seen = []
    monkeypatch.setattr(reference, "config_defaults", lambda fields, store=None: seen.append(store))
    monkeypatch.setattr(harness, "_secret", None)
    harness.config_defaults(FIELDS)
    monkeypatch.setattr(harness, "_secret", (7, str(tmp_path)))
    harness.config_defaults(FIELDS)
    assert seen == [checkpoints.cache_dir() / "references", None]


# --------------------------------------------------------------------------- reading checkpoints without torch

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_read_safetensors_reads_what_safetensors_reads(folder, tmp_path, dtype):
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(getattr(torch, dtype)) for k, v in load_file(str(folder / "model.safetensors")).items()}
    tensors["transformer.h.0.attn.bias"] = torch.tril(torch.ones(4, 4, dtype=torch.uint8))  # an old mask buffer
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    ours = weights.read_safetensors(path)
    assert sorted(ours) == sorted(tensors)
    for name, t in tensors.items():
        want = t.numpy() if t.dtype == torch.uint8 else t.float().numpy()
        assert ours[name].dtype == want.dtype, name
        np.testing.assert_array_equal(ours[name], want, err_msg=name)
