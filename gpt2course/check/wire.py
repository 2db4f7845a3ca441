"""The wire between the judge and the worker: messages of JSON and NumPy's ``.npy`` bytes.

A message is an 8-byte length, a JSON header, and the ``.npy`` blobs the header refers to,
each with its own 8-byte length. Nothing is pickled (unpickling runs code), and an array
that arrives is read with ``allow_pickle=False`` and accepted only as plain numbers: bool,
integer, float or complex, its header's shape matching its bytes.

Values travel as JSON, tagged where JSON has no word for them::

    >>> encode({"x": np.zeros(2), "k": (1, None)})
    ({'$dict': {'x': {'$nd': 0}, 'k': {'$tuple': [1, None]}}}, [b'\\x93NUMPY...'])

Anything else (a function, a module, the learner's class, a MAX cache) stays where it
lives and crosses as a handle, ``{"$w": n}`` for the worker's objects and ``{"$j": n}`` for
the judge's; each side turns a handle it receives into a proxy (``make_proxy``) whose calls
travel back. A handle of one's own comes back as the object itself (``own``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct

import numpy as np

MAX_HEADER = 64 << 20      # bytes of JSON in one message
MAX_BLOB = 8 << 30         # bytes of one array (GPT-2 XL's largest weights fit)
_LEN = struct.Struct("<Q")
ARRAY_KINDS = "biufc"      # bool, signed, unsigned, float, complex: what may arrive


class WireError(Exception):
    """The other side sent something that is not a well-formed message (or went away)."""


class Closed(WireError):
    """The other side's end of the pipe closed (the process ended)."""


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
def encode(value, handle=None, *, configs: bool = False):
    """(JSON-able header, blobs) for ``value``; objects JSON cannot carry go to ``handle``
    (a function object -> its tag dict), or raise TypeError when there is none. ``configs``:
    send the course's GPT2Config as its fields (the judge's to the worker; the other way,
    the learner's config stays in the worker and crosses as a handle)."""
    blobs: list[bytes] = []

    def enc(v):
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
            return [enc(x) for x in v]
        if isinstance(v, tuple):
            return {"$tuple": [enc(x) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"$dict": {k: enc(x) for k, x in v.items()}}
        if isinstance(v, np.random.Generator):
            return {"$rng": _jsonable(v.bit_generator.state)}
        if configs and dataclasses.is_dataclass(v) and not isinstance(v, type) and type(v).__name__ == "GPT2Config":
            return {"$config": enc({f.name: getattr(v, f.name) for f in dataclasses.fields(v)})}
        kind = type(v).__module__ or ""
        if kind.startswith("max.dtype") and type(v).__name__ == "DType":
            return {"$dtype": v.name}
        if isinstance(v, Sentinel):
            return {k: enc(x) for k, x in v.tag.items()} if set(v.tag) & set(DECODED_TAGS) else v.tag
        arr = host_array(v) if kind.startswith("max.") else None
        if arr is not None and arr.dtype.kind in ARRAY_KINDS:
            blobs.append(array_bytes(arr))
            return {"$nd": len(blobs) - 1}
        if handle is not None:
            return handle(v)
        raise TypeError(f"cannot send a {type(v).__name__}")

    return enc(value), blobs


def decode(header, blobs: list[bytes], resolve=None):
    """The value ``encode`` made; ``resolve(tag_dict)`` turns handles and sentinels into objects."""
    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) != 1:
            raise WireError(f"an untagged object in a message: {sorted(v)[:5]}")
        (tag, body), = v.items()
        if tag == "$nd":
            return array_from(_blob(blobs, body))
        if tag == "$scalar":
            arr = array_from(_blob(blobs, body))
            if arr.shape != ():
                raise WireError("a scalar that is not 0-d")
            return arr[()]
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise WireError(f"a float {body!r}")
            return float(body)
        if tag == "$tuple":
            return tuple(dec(x) for x in _list(body))
        if tag == "$dict":
            if not isinstance(body, dict):
                raise WireError("a $dict that is not an object")
            return {str(k): dec(x) for k, x in body.items()}
        if tag == "$rng":
            try:
                bg = getattr(np.random, body["bit_generator"])()
                bg.state = body
            except Exception as exc:
                raise WireError(f"a random generator state that NumPy refuses ({exc})") from None
            return np.random.Generator(bg)
        if resolve is not None:
            return resolve({tag: dec(body) if tag in DECODED_TAGS else body})
        raise WireError(f"an unknown tag {tag!r}")

    return dec(header)


def _blob(blobs, index):
    if not isinstance(index, int) or not 0 <= index < len(blobs):
        raise WireError(f"a reference to array {index!r}, which the message does not carry")
    return blobs[index]


def _list(v):
    if not isinstance(v, list):
        raise WireError("a $tuple that is not a list")
    return v


def _jsonable(state):
    if isinstance(state, dict):
        return {str(k): _jsonable(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return state.tolist()
    if isinstance(state, np.generic):
        return state.item()
    return state


DECODED_TAGS = ("$config", "$tensor", "$make")  # tags whose body is itself a value


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


# -- messages -------------------------------------------------------------------------------
class Channel:
    """One end of the pipe pair: ``send(header, blobs)``, ``receive() -> (header, blobs)``."""

    def __init__(self, read_fd: int, write_fd: int):
        self.rfile = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self.wfile = os.fdopen(write_fd, "wb", buffering=1 << 16)

    def send(self, header: dict, blobs: list[bytes] = ()) -> None:
        data = json.dumps(dict(header, blobs=len(blobs)), allow_nan=False).encode()
        try:
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

    def receive(self) -> tuple[dict, list[bytes]]:
        (n,) = _LEN.unpack(self._exactly(_LEN.size))
        if n > MAX_HEADER:
            raise WireError(f"a message header of {n} bytes (at most {MAX_HEADER})")
        try:
            header = json.loads(self._exactly(n))
        except ValueError as exc:
            raise WireError(f"a message that is not JSON ({exc})") from None
        if not isinstance(header, dict) or not isinstance(header.get("blobs", 0), int):
            raise WireError("a message that is not a JSON object")
        blobs = []
        for _ in range(header.pop("blobs", 0)):
            (size,) = _LEN.unpack(self._exactly(_LEN.size))
            if size > MAX_BLOB:
                raise WireError(f"an array of {size} bytes (at most {MAX_BLOB})")
            blobs.append(self._exactly(size))
        return header, blobs

    def close(self) -> None:
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except Exception:
                pass
