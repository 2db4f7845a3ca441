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
    assert np.array_equal(roundtrip(rng).normal(size=5), rng.normal(size=5))


def test_objects_need_a_handle():
    with pytest.raises(TypeError):
        wire.encode(object())
    header, _ = wire.encode([len], handle=lambda obj: {"$j": 1})
    assert header == [{"$j": 1}]


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
    for header in ({"$nd": 3}, {"$what": 1}, {"a": 1, "b": 2}, {"$float": "1e400"}):
        with pytest.raises(wire.WireError):
            wire.decode(header, [])


def test_channel_limits(tmp_path):
    import os

    r, w = os.pipe()
    ch = wire.Channel(r, w)
    ch.send({"op": "x"}, [wire.array_bytes(np.ones(3))])
    header, blobs = ch.receive()
    assert header == {"op": "x"} and np.array_equal(wire.array_from(blobs[0]), np.ones(3))
    os.write(w, (wire.MAX_HEADER + 1).to_bytes(8, "little"))
    with pytest.raises(wire.WireError, match="header"):
        ch.receive()
    ch.close()
