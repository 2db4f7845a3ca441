"""What crosses between the judge and the worker (both processes use this module).

The judge (the check's pytest process, ``gpt2course.check.judge_end``) asks; the worker
(``gpt2course.check.worker``, the only process that runs the code under check) answers.
Every message is one of the typed messages below, read with ``msgspec`` against the union of
what that side may receive, so a message of any other shape is refused before anything looks
at it. The whole vocabulary, in both directions, is listed in docs/grading.md.

On the pipe a message is an 8-byte length, its JSON, and the ``.npy`` arrays it refers to,
each with its own 8-byte length. Nothing is pickled (unpickling runs code); an array is
accepted only as plain numbers (bool, integer, float, complex) whose header matches its bytes.

Values inside messages are JSON, tagged where JSON has no word for them::

    >>> encode({"x": np.zeros(2), "k": (1, None)})
    ({'$dict': {'x': {'$nd': 0}, 'k': {'$tuple': [1, None]}}}, [b'\\x93NUMPY...'])

Which tags a side accepts is fixed by direction (``TO_JUDGE``, ``TO_WORKER``): the judge
accepts plain values and ``$w`` (an object that stays in the worker) and nothing else.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import threading
from typing import Any, Union

import msgspec
import numpy as np

_LEN = struct.Struct("<Q")
ARRAY_KINDS = "biufc"      # bool, signed, unsigned, float, complex: what may arrive
MAX_DEPTH = 32             # nesting of a value (lists, tuples, dicts)


class WireError(Exception):
    """The other side sent something that is not a well-formed message (or went away)."""


class Closed(WireError):
    """The other side's end of the pipe closed (the process ended)."""


# -- the messages ---------------------------------------------------------------------------
class _Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Request(_Message, tag="request"):
    """Judge -> worker: do ``op`` (a verb of ``WORKER_OPS``) on ``value``; ``target`` names an
    object the worker handed out, ``name`` an attribute or export, ``lazy`` builds modules lazily."""
    id: int
    op: str
    doing: str = ""
    value: Any = None
    target: Union[int, None] = None
    name: Union[str, None] = None
    lazy: bool = False
    blobs: int = 0


class Answer(_Message, tag="answer"):
    """Judge -> worker: what a callback returned (plain values only)."""
    value: Any = None
    blobs: int = 0


class Refused(_Message, tag="refused"):
    """Judge -> worker: the callback raised, or was not the judge's to answer."""
    message: str


class Error(_Message):
    type: str
    message: str
    hint: Union[str, None] = None
    todo: Union[int, None] = None


class Reply(_Message, tag="reply"):
    """Worker -> judge: request ``id``'s result."""
    id: int
    value: Any = None
    blobs: int = 0


class Raise(_Message, tag="raise"):
    """Worker -> judge: request ``id`` raised (the learner's error, as text)."""
    id: int
    error: Error


class Say(_Message, tag="say"):
    """Worker -> judge: a progress line (MAX is compiling)."""
    text: str


class Fatal(_Message, tag="fatal"):
    """Worker -> judge: the worker could not start (before the step's file was imported)."""
    text: str


class Callback(_Message, tag="callback"):
    """Worker -> judge: while request ``id`` runs, call the judge's callable ``name`` (one the
    judge registered for that request) with ``value`` = [args, kwargs] of plain values."""
    id: int
    name: str
    value: Any = None
    blobs: int = 0


FROM_JUDGE = Union[Request, Answer, Refused]
FROM_WORKER = Union[Reply, Raise, Say, Fatal, Callback]
# What the judge answers: the message kinds it acts on, and nothing else (tests pin it).
JUDGE_ANSWERS = ("callback",)
JUDGE_READS = ("reply", "raise", "say", "fatal", "callback")
# The verbs the worker carries out for the judge.
WORKER_OPS = ("load", "export", "call", "getattr", "describe", "parameters", "run", "diagnose",
              "cached_model", "confinement")


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much one message may carry."""
    header: int
    blob: int
    total: int
    blobs: int


# The judge reads what the worker computed: outputs and ids (step 11's logits are ~5 MB).
FROM_WORKER_LIMITS = Limits(header=4 << 20, blob=256 << 20, total=512 << 20, blobs=256)
# The worker reads what the judge sends: weights (GPT-2 XL's largest is 322 MB; all ~6.5 GB).
FROM_JUDGE_LIMITS = Limits(header=64 << 20, blob=8 << 30, total=32 << 30, blobs=4096)


# -- arrays ---------------------------------------------------------------------------------
def array_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype.kind not in ARRAY_KINDS or arr.dtype.fields is not None:
        raise TypeError(f"cannot send an array of dtype {arr.dtype} (only numbers and booleans)")
    buf = io.BytesIO()
    np.save(buf, np.require(arr, requirements="C"), allow_pickle=False)  # keeps 0-d arrays 0-d
    return buf.getvalue()


def array_from(blob: bytes) -> np.ndarray:
    """An array from ``.npy`` bytes, refusing objects, structured dtypes and size mismatches."""
    buf = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(buf)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(buf)
    except Exception as exc:
        raise WireError(f"an array that is not .npy data ({exc})") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
        raise WireError(f"an array of dtype {dtype}: only numbers and booleans may be sent")
    count = 1
    for d in shape:
        count *= int(d)
    if len(blob) - buf.tell() != count * dtype.itemsize:
        raise WireError(f"an array whose header says {list(shape)} {dtype} but whose data has "
                        f"{len(blob) - buf.tell()} bytes")
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def host_array(x) -> np.ndarray | None:
    """A MAX Tensor or driver Buffer (or anything with DLPack) as a NumPy array on the host,
    keeping its dtype; None if ``x`` is not array-like."""
    if isinstance(x, np.ndarray):
        return x
    if not hasattr(x, "__dlpack__"):
        return None
    try:
        from max.driver import CPU

        if hasattr(x, "device") and not isinstance(x.device, CPU):
            x = x.to(CPU())
    except Exception:
        pass
    try:
        return np.from_dlpack(x)
    except Exception:
        pass
    try:  # dtypes NumPy has no word for (bfloat16): as float32
        from max.dtype import DType

        return np.from_dlpack(x.cast(DType.float32))
    except Exception:
        return None


# -- values ---------------------------------------------------------------------------------
PLAIN_TAGS = ("$float", "$nd", "$scalar", "$tuple", "$dict")
# What the judge accepts inside a value: plain values, and objects that stay in the worker.
TO_JUDGE = PLAIN_TAGS + ("$w",)
# What the worker accepts: the judge also names MAX things for it to make, the check's
# random generator, the course's config, and the callables it registered for this request.
TO_WORKER = PLAIN_TAGS + ("$w", "$rng", "$config", "$dtype", "$device", "$tensor", "$make", "$callback")
_NESTED_TAGS = ("$config", "$tensor", "$make")  # tags whose body is itself a value


def encode(value, out_of_band=None):
    """(JSON-able header, blobs) for ``value``. What JSON cannot carry goes to
    ``out_of_band(obj) -> tag dict`` (the side's own objects, sentinels); without one, or if
    it raises TypeError, the value cannot be sent."""
    blobs: list[bytes] = []

    def enc(v, depth):
        if depth > MAX_DEPTH:
            raise TypeError(f"a value nested more than {MAX_DEPTH} deep")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if v == v and abs(v) != float("inf") else {"$float": repr(v)}
        if isinstance(v, np.generic) and v.dtype.kind in ARRAY_KINDS:
            blobs.append(array_bytes(np.asarray(v)))
            return {"$scalar": len(blobs) - 1}
        if isinstance(v, np.ndarray) and v.dtype.kind in ARRAY_KINDS:
            blobs.append(array_bytes(v))
            return {"$nd": len(blobs) - 1}
        if isinstance(v, list):
            return [enc(x, depth + 1) for x in v]
        if isinstance(v, tuple):
            return {"$tuple": [enc(x, depth + 1) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"$dict": {k: enc(x, depth + 1) for k, x in v.items()}}
        if isinstance(v, Sentinel):
            return {k: (enc(x, depth + 1) if k in _NESTED_TAGS else x) for k, x in v.tag.items()}
        arr = host_array(v) if (type(v).__module__ or "").startswith("max.") else None
        if arr is not None and arr.dtype.kind in ARRAY_KINDS:  # a MAX Tensor: its numbers
            blobs.append(array_bytes(arr))
            return {"$nd": len(blobs) - 1}
        if out_of_band is not None:
            return out_of_band(v)
        raise TypeError(f"cannot send a {type(v).__name__}")

    return enc(value, 0), blobs


def decode(header, blobs: list[bytes], *, tags=PLAIN_TAGS, resolve=None):
    """The value ``encode`` made. Only tags in ``tags`` are accepted; ``resolve(tag, body)``
    turns those that are not plain values into objects."""
    def dec(v, depth):
        if depth > MAX_DEPTH:
            raise WireError(f"a value nested more than {MAX_DEPTH} deep")
        if isinstance(v, list):
            return [dec(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            if v is None or isinstance(v, (bool, int, float, str)):
                return v
            raise WireError(f"a value of type {type(v).__name__}")
        if len(v) != 1:
            raise WireError(f"an untagged object in a message: {sorted(map(str, v))[:5]}")
        (tag, body), = v.items()
        if tag not in tags:
            raise WireError(f"a value tagged {str(tag)[:40]!r}, which this side does not accept")
        if tag == "$nd":
            return array_from(_blob(blobs, body))
        if tag == "$scalar":
            arr = array_from(_blob(blobs, body))
            if arr.shape != ():
                raise WireError("a scalar that is not 0-d")
            return arr[()]
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise WireError(f"a float {str(body)[:40]!r}")
            return float(body)
        if tag == "$tuple":
            if not isinstance(body, list):
                raise WireError("a $tuple that is not a list")
            return tuple(dec(x, depth + 1) for x in body)
        if tag == "$dict":
            if not isinstance(body, dict):
                raise WireError("a $dict that is not an object")
            return {str(k): dec(x, depth + 1) for k, x in body.items()}
        if resolve is None:
            raise WireError(f"a value tagged {tag!r} that nothing here can make")
        return resolve(tag, dec(body, depth + 1) if tag in _NESTED_TAGS else body)

    return dec(header, 0)


def _blob(blobs, index):
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(blobs):
        raise WireError(f"a reference to array {str(index)[:20]!r}, which the message does not carry")
    return blobs[index]


def rng_state(rng: np.random.Generator) -> dict:
    """A NumPy Generator's state as JSON (the judge sends the check's generator this way)."""
    def plain(state):
        if isinstance(state, dict):
            return {str(k): plain(v) for k, v in state.items()}
        if isinstance(state, np.ndarray):
            return state.tolist()
        if isinstance(state, np.generic):
            return state.item()
        return state
    return plain(rng.bit_generator.state)


BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_from(state) -> np.random.Generator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise WireError(f"a random generator {str(name)[:40]!r}")
    try:
        bg = getattr(np.random, name)()
        bg.state = state
    except Exception as exc:
        raise WireError(f"a random generator state that NumPy refuses ({exc})") from None
    return np.random.Generator(bg)


class Sentinel:
    """A value the judge names and the worker makes: the check's device, a MAX dtype."""

    def __init__(self, tag: dict, label: str):
        self.tag, self.label = tag, label

    def __repr__(self) -> str:
        return self.label


def device() -> Sentinel:
    """The device the worker runs MAX on (``--device``), as an argument to a learner's function."""
    return Sentinel({"$device": "check"}, "device")


def dtype(name: str) -> Sentinel:
    """A MAX DType by name ("float32", "int64") as an argument to a learner's function."""
    return Sentinel({"$dtype": name}, f"DType.{name}")


def tensor(arr: np.ndarray) -> Sentinel:
    """A MAX Tensor on the check's device, made in the worker from ``arr``."""
    return Sentinel({"$tensor": np.ascontiguousarray(arr)}, f"Tensor{list(np.shape(arr))}")


def make(module: str, name: str, *args, **kwargs) -> Sentinel:
    """``module.name(*args, **kwargs)`` built in the worker: a piece of an earlier step's
    solution that the check hands to the learner's code (step 08's sublayer)."""
    return Sentinel({"$make": {"module": module, "name": name, "args": list(args), "kwargs": kwargs}},
                    f"{name}(...)")


class Callable_:
    """A callable of the judge's that the worker may call back, by ``name``, while the
    request that carries it runs (a stand-in model). Made with ``callback``."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def __repr__(self) -> str:
        return f"<{self.name}, in the checking process>"


def callback(name: str, fn) -> Callable_:
    """``fn`` (the judge's) as an argument the code under check may call: plain values in,
    plain values out, only during the request it is passed with."""
    return Callable_(name, fn)


# -- the pipe -------------------------------------------------------------------------------
class Channel:
    """One end of the pipe pair. ``send(message, blobs)``; ``receive() -> (message, blobs)``,
    read as one of ``accepts`` (a union of message types) within ``limits``."""

    def __init__(self, read_fd: int, write_fd: int, accepts, limits: Limits):
        self.rfile = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self.wfile = os.fdopen(write_fd, "wb", buffering=1 << 16)
        self.decoder = msgspec.json.Decoder(accepts)
        self.lock = threading.Lock()  # a progress line may be sent from another thread
        self.limits = limits
        self.last_raw = b""  # the last header read (to name what a refused message asked)

    def send(self, message: _Message, blobs: list[bytes] = ()) -> None:
        try:
            data = msgspec.json.encode(message)
        except UnicodeEncodeError:  # text with lone surrogates (a learner's error message): escaped
            data = msgspec.json.encode(_mend(msgspec.to_builtins(message)))
        try:
            with self.lock:
                self.wfile.write(_LEN.pack(len(data)) + data)
                for b in blobs:
                    self.wfile.write(_LEN.pack(len(b)))
                    self.wfile.write(b)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            raise Closed(str(exc)) from None

    def _exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.rfile.read(min(left, 1 << 24))
            if not chunk:
                raise Closed("end of pipe")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        lim = self.limits
        (n,) = _LEN.unpack(self._exactly(_LEN.size))
        if n > lim.header:
            raise WireError(f"a message header of {n} bytes (at most {lim.header})")
        self.last_raw = raw = self._exactly(n)
        try:
            message = self.decoder.decode(raw)
        except RecursionError:
            raise WireError("a message nested too deep to read") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Unexpected(raw, str(exc)) from None
        count = getattr(message, "blobs", 0)
        if not 0 <= count <= lim.blobs:
            raise WireError(f"a message with {count} arrays (at most {lim.blobs})")
        blobs, total = [], 0
        for _ in range(count):
            (size,) = _LEN.unpack(self._exactly(_LEN.size))
            total += size
            if size > lim.blob or total > lim.total:
                raise WireError(f"an array of {size} bytes (at most {lim.blob}; "
                                f"{lim.total} in one message)")
            blobs.append(self._exactly(size))
        return message, blobs

    def close(self) -> None:
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except Exception:
                pass


def _mend(value):
    """``value`` with every string's lone surrogates written as backslash escapes (JSON can
    carry only whole UTF-16 pairs; a lone one would make the other side refuse the message)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_mend(v) for v in value]
    if isinstance(value, dict):
        return {_mend(k): _mend(v) for k, v in value.items()}
    return value


class Unexpected(WireError):
    """A message that is none of the kinds this side reads; ``asked`` says what it asked for."""

    def __init__(self, raw: bytes, why: str):
        self.asked = describe(raw)
        super().__init__(f"{self.asked} ({why})")


def describe(raw: bytes) -> str:
    """What a refused message asked for, in words, read leniently from its JSON."""
    import json

    try:
        obj = json.loads(raw[:1 << 16])
    except (ValueError, RecursionError):
        return "a message that is not JSON"
    if not isinstance(obj, dict):
        return f"a message that is a JSON {type(obj).__name__}, not an object"
    kind = str(obj.get("type", obj.get("kind", obj.get("op", "?"))))[:40]
    name = obj.get("name")
    what = f"{kind!r}" + (f" of {str(name)[:60]!r}" if name is not None else "")
    if "target" in obj:
        what += f" on object {str(obj.get('target'))[:20]}"
    return f"a message asking for {what}"
