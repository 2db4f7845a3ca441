"""MAX's error texts, translated for a learner: what their code asked MAX to do and why it
could not. ``explain(exc)`` returns (what happened, what to do) or None when the text is not
one of MAX's known failures; targets.learner_errors puts the learner's own frame and MAX's raw
text under it.

The texts matched here were provoked with max 26.7.0 (eager ops and compiled modules):
  Failed to create op 'MatmulOp': ... Diagnostics:
      Matrix multiplication input lhs (shape [2, 3]) dimension at axis -1 (value 3) must match
      input rhs (shape [4, 5]) dimension at axis -2 (value 4)
  Failed to create op 'AddOp': ... Input lhs (shape [2, 3]) dimension at axis 1 (value 3) and
      input rhs (shape [4, 5]) dimension at axis 1 (value 5) are neither equivalent nor broadcastable.
  Failed to create op 'AddOp': ... Failed to resolve valid dtype: Unsafe cast from si64 to f64.
  Failed to create op 'ReshapeOp': ... input and output number of elements must match:
      #mosh<ape[2, 3]> : !mosh.ape != #mosh<ape[4, 2]> : !mosh.ape
  IndexError: Axis axis_2 out of range (expected to be in range of [-2, 1], but got 3)
  softmax over axis 5 of a rank-2 tensor (a RemoteCompileError / RuntimeError whose cause says)
      ... "rank": 2, ... "reduce_dim": 5, ... rowwise_softmax.mojo:70:5: note: constraint failed:
      reduce_dim must be in [0, rank) ... Failed to compile the model. Please file an issue, ...
and, from MAX's own source (max/graph/ops/validation.py, max/engine/api.py):
  Input values must be on the same device
  Failed to compile the model. Please file an issue, all models should be correct by construction ...
"""

from __future__ import annotations

import re

_OP = re.compile(r"Failed to create op '(\w+?)(?:Op)?'")
_INPUT = re.compile(r"(input_\w+|\w+) = TensorValue\(dtype=(\w+), shape=\[([^\]]*)\], device=([\w:]+)\)")
_MATMUL = re.compile(r"Matrix multiplication input lhs \(shape (\[[^\]]*\])\) dimension at axis (-?\d+) \(value (\w+)\) "
                     r"must match input rhs \(shape (\[[^\]]*\])\) dimension at axis (-?\d+) \(value (\w+)\)")
_BROADCAST = re.compile(r"Input lhs \(shape (\[[^\]]*\])\) dimension at axis (-?\d+) \(value (\w+)\) and input rhs "
                        r"\(shape (\[[^\]]*\])\) dimension at axis (-?\d+) \(value (\w+)\) are neither equivalent "
                        r"nor broadcastable")
_UNSAFE_CAST = re.compile(r"Unsafe cast from (\w+) to (\w+)")
_MLIR_DTYPES = {"si64": "int64", "si32": "int32", "f64": "float64", "f32": "float32", "f16": "float16",
                "bf16": "bfloat16", "ui8": "uint8", "i1": "bool"}


def _dims(text: str) -> str:
    return "[" + ", ".join(re.sub(r"Dim\((\w+)\)", r"\1", d.strip()) for d in text.split(",") if d.strip()) + "]"


def inputs(text: str) -> list[tuple[str, str, str]]:
    """(dtype, shape, device) of each input of the op MAX could not create."""
    return [(dtype, _dims(shape), dev) for _, dtype, shape, dev in _INPUT.findall(text)]


_RESHAPE = re.compile(r"number of elements must match: #mosh<ape(\[[^\]]*\])>.*?#mosh<ape(\[[^\]]*\])>")
_AXIS_RANGE = re.compile(r"Axis (\w+) out of range \(expected to be in range of \[(-?\d+), (-?\d+)\], but got (-?\d+)\)")
_REDUCE_DIM = re.compile(r'"reduce_dim": (-?\d+)')
_RANK = re.compile(r'"rank": (\d+)')


def _chain_text(exc: BaseException) -> str:
    """The text of the exception and of what caused it (MAX wraps compile errors)."""
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def explain(exc: BaseException) -> tuple[str, str] | None:
    text = _chain_text(exc)
    m = _OP.search(text)
    op = m.group(1) if m else None
    ins = inputs(text)
    if (m := _MATMUL.search(text)):
        lhs, _, lv, rhs, _, rv = m.groups()
        return (f"a matrix multiplication (@) of shapes {lhs} and {rhs}: the left's last axis ({lv}) must "
                f"equal the right's second-to-last ({rv})",
                "print both shapes; usually one side needs .transpose(-1, -2) (k^T in q @ k^T), or the "
                "operands are swapped, or heads were split differently on the two sides")
    if (m := _BROADCAST.search(text)):
        lhs, ax, lv, rhs, _, rv = m.groups()
        return (f"an elementwise {op or 'op'} of shapes {lhs} and {rhs}: axis {ax} has {lv} on one side and "
                f"{rv} on the other, and they do not broadcast (sizes must be equal, or one of them 1)",
                "print the two shapes just before this line; a reshape or transpose earlier went wrong, or "
                "a mask/bias was built for another size")
    if (m := _UNSAFE_CAST.search(text)):
        have = " and ".join(sorted({d for d, _, _ in ins})) or " and ".join(
            _MLIR_DTYPES.get(g, g) for g in m.groups())
        return (f"an {op or 'op'} mixing dtypes {have}: MAX does not convert between them silently",
                "make both sides the same dtype: create tensors with dtype=x.dtype (e.g. Tensor.arange("
                "..., dtype=DType.float32)) or cast explicitly with .cast(DType.float32)")
    if "must be on the same device" in text:
        devices = sorted({d for _, _, d in ins}) or sorted(set(re.findall(r"device=([\w:]+)", text)))
        return (f"an {op or 'op'} whose inputs live on different devices"
                + (f" ({', '.join(devices)})" if devices else ""),
                "create new tensors on the device of the others: pass device=x.device (e.g. "
                "Tensor.arange(n, device=x.device), causal_mask(..., device=x.device))")
    if (m := _RESHAPE.search(text)):
        return (f"a reshape from {m.group(1)} to {m.group(2)}: the number of elements must stay the same",
                "the new shape must multiply to the same total (e.g. [batch, seq, n_head, head_dim] from "
                "[batch, seq, n_embd]); read the sizes from x.shape, not from constants")
    if (m := _AXIS_RANGE.search(text)):
        lo, hi, got = m.group(2), m.group(3), m.group(4)
        return (f"axis {got}, which the tensor does not have: its axes are {lo} .. {hi}",
                "count the tensor's axes (len(x.shape)); negative axes count from the end: -1 is the last")
    if "reduce_dim must be in [0, rank)" in text:
        dim, rank = _REDUCE_DIM.search(text), _RANK.search(text)
        kind = "softmax" if "softmax" in text else "a reduction"
        return (f"{kind} over axis {dim.group(1) if dim else '?'} of a tensor with "
                f"{rank.group(1) if rank else 'fewer'} axes: that axis does not exist, so MAX could not "
                "compile the op",
                "softmax over the last axis: F.softmax(x, axis=-1)")
    if "Failed to compile the model" in text:
        return ("MAX built your graph but could not compile it: an op got arguments that passed MAX's "
                "checks while building and failed later (for example softmax or a reduction over an axis "
                "MAX cannot lower, such as softmax over an axis other than the last)",
                "look at the ops you changed last: softmax/mean/sum over axis=-1 (the last axis), shapes "
                "and dtypes as the TODO says; MAX's 'please file an issue' does not mean MAX is broken")
    if isinstance(exc, IndexError) and re.search(r"[Aa]xis.*out of range|out of range.*axis", text):
        return ("an axis that the tensor does not have (its rank is smaller than the axis you named)",
                "count the tensor's axes (len(x.shape)); negative axes count from the end: -1 is the last")
    return None
