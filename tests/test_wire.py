"""The judge-worker wire: values cross as JSON and .npy bytes, and nothing else is accepted."""

import io
import pickle

import numpy as np
import pytest

from gpt2course.check import wire


def roundtrip(value):
    header, blobs = wire.encode(value)
    return wire.decode(header, blobs)


def test_values_round_trip():
    value = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": (1, 2.5, None, "x", True),
             "c": [np.float32(1.5), float("nan"), float("-inf")], "d": np.zeros((0, 4), np.float32)}
    out = roundtrip(value)
    assert out["a"].dtype == np.int64 and np.array_equal(out["a"], value["a"])
    assert out["b"] == value["b"] and isinstance(out["b"], tuple)
    assert out["c"][0] == np.float32(1.5) and np.isnan(out["c"][1]) and out["c"][2] == float("-inf")
    assert out["d"].shape == (0, 4)


def test_a_generator_arrives_in_the_same_state():
    rng = np.random.default_rng(7)
    rng.normal(size=3)
    assert np.array_equal(wire.rng_from(wire.rng_state(rng)).normal(size=5), rng.normal(size=5))
    with pytest.raises(wire.WireError, match="random generator"):
        wire.rng_from({"bit_generator": "seed"})  # only a bit generator's name, nothing else of np.random


def test_objects_go_out_of_band_or_not_at_all():
    with pytest.raises(TypeError):
        wire.encode(object())
    header, _ = wire.encode([len], out_of_band=lambda obj: {"$w": 1})
    assert header == [{"$w": 1}]


def test_each_side_reads_only_its_own_tags():
    for tag in ("$j", "$callback", "$rng", "$config", "$make", "$tensor", "$dtype", "$device"):
        with pytest.raises(wire.WireError, match="does not accept"):
            wire.decode({tag: 1}, [], tags=wire.TO_JUDGE, resolve=lambda t, b: b)
    assert wire.decode({"$w": 4}, [], tags=wire.TO_JUDGE, resolve=lambda t, b: ("obj", b)) == ("obj", 4)
    deep = [1]
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested"):
        wire.decode(deep, [])


@pytest.mark.parametrize("arr", [np.array([object()]), np.zeros(2, dtype=[("x", "f4")]), np.array(["s"])])
def test_arrays_of_anything_but_numbers_are_refused(arr):
    with pytest.raises(TypeError):
        wire.array_bytes(arr)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    with pytest.raises(wire.WireError):
        wire.array_from(buf.getvalue())


def test_a_pickle_or_a_short_array_is_refused():
    with pytest.raises(wire.WireError):
        wire.array_from(pickle.dumps(np.zeros(3)))
    good = wire.array_bytes(np.zeros((4, 4), np.float32))
    with pytest.raises(wire.WireError, match="header says"):
        wire.array_from(good[:-8])
    with pytest.raises(wire.WireError, match="header says"):
        wire.array_from(good + b"\0" * 8)


def test_unknown_tags_and_untagged_objects_are_refused():
    for header in ({"$nd": 3}, {"$what": 1}, {"a": 1, "b": 2}, {"$float": "1e400"}, {"$nd": True}):
        with pytest.raises(wire.WireError):
            wire.decode(header, [])


def test_channel_limits(tmp_path):
    import os

    r, w = os.pipe()
    ch = wire.Channel(r, w, wire.FROM_WORKER, wire.FROM_WORKER_LIMITS)
    ch.send(wire.Reply(id=1, value={"$nd": 0}, blobs=1), [wire.array_bytes(np.ones(3))])
    message, blobs = ch.receive()
    assert message == wire.Reply(id=1, value={"$nd": 0}, blobs=1)
    assert np.array_equal(wire.array_from(blobs[0]), np.ones(3))
    os.write(w, (wire.FROM_WORKER_LIMITS.header + 1).to_bytes(8, "little"))
    with pytest.raises(wire.WireError, match="header"):
        ch.receive()
    ch.send(wire.Reply(id=1, blobs=wire.FROM_WORKER_LIMITS.blobs + 1))
    with pytest.raises(wire.WireError, match="arrays"):
        ch.receive()
    ch.close()


def test_a_message_of_another_kind_is_named_and_refused():
    import os

    r, w = os.pipe()
    ch = wire.Channel(r, w, wire.FROM_WORKER, wire.FROM_WORKER_LIMITS)
    ch.send(wire.Request(id=1, op="getattr", name="__globals__"))  # the judge reads no requests
    with pytest.raises(wire.Unexpected, match="'request' of '__globals__'"):
        ch.receive()
    ch.close()


def test_text_with_lone_surrogates_still_crosses():
    """A learner's error message may hold lone surrogates: they arrive escaped, not as a
    message the other side must refuse."""
    import os

    r, w = os.pipe()
    ch = wire.Channel(r, w, wire.FROM_WORKER, wire.FROM_WORKER_LIMITS)
    ch.send(wire.Raise(id=1, error=wire.Error(type="error", message="bad \ud800 text \udfff")))
    message, _ = ch.receive()
    assert message.error.message == "bad \\ud800 text \\udfff"
    ch.close()
