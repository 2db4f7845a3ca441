"""MAX's failures explained (pure Python, no MAX): the texts below are what max 26.7.0 raised
when provoked (see gpt2course/check/max_errors.py); learner_errors must name what the code did, show
the learner's frame, and keep MAX's raw text after it."""

from pathlib import Path

import pytest

from gpt2course.check import learner, max_errors
from gpt2course.errors import CheckFailure

MATMUL = """Failed to create op 'MatmulOp':
Inputs:
    input_x = TensorValue(dtype=float32, shape=[Dim(2), Dim(3)], device=cpu:0)
    input_y = TensorValue(dtype=float32, shape=[Dim(4), Dim(5)], device=cpu:0)

Diagnostics:
    Matrix multiplication input lhs (shape [2, 3]) dimension at axis -1 (value 3) must match input rhs (shape [4, 5]) dimension at axis -2 (value 4)
Failed to infer result type(s) for 'rmo.matmul'"""

BROADCAST = """Failed to create op 'AddOp':
Inputs:
    input_x = TensorValue(dtype=float32, shape=[Dim(2), Dim(3)], device=cpu:0)
    input_y = TensorValue(dtype=float32, shape=[Dim(4), Dim(5)], device=cpu:0)

Diagnostics:
    Input lhs (shape [2, 3]) dimension at axis 1 (value 3) and input rhs (shape [4, 5]) dimension at axis 1 (value 5) are neither equivalent nor broadcastable. Insert an explicit rebind if these dims will be equivalent at runtime.
Failed to infer result type(s) for 'rmo.add'"""

DTYPE = """Failed to create op 'AddOp':
Inputs:
    input_x = TensorValue(dtype=float32, shape=[Dim(2), Dim(3)], device=cpu:0)
    input_y = TensorValue(dtype=int64, shape=[Dim(2), Dim(3)], device=cpu:0)

Diagnostics:
    Failed to resolve valid dtype: Unsafe cast from si64 to f64. Insert an explicit cast op if this conversion is wanted.
Failed to infer result type(s) for 'rmo.add'"""

DEVICE = """Input values must be on the same device
    lhs: TensorType(dtype=float32, shape=[Dim(2)], device=cpu:0)
    rhs: TensorType(dtype=float32, shape=[Dim(2)], device=gpu:0)"""

SOFTMAX_AXIS = """failed to compile with error: RuntimeError: Graph compilation failed:
error: function instantiation failed
<unknown>:151:110: note: call expansion failed with parameter value(s): (..., "axis": 5, ..., "output.rank`2x1": 2, ...)
max/kernels/src/graph_compiler/builtin_kernels/reductions.mojo:2207:79: note: call expansion failed with parameter value(s): (..., "rank": 2, ..., ..., ..., "logsoftmax": False, "reduce_dim": 5, ..., ..., ..., "output.address_space`7": 0, ...)
max/kernels/src/graph_compiler/builtin_kernels/rowwise_softmax.mojo:41:5: note: function instantiation failed
max/kernels/src/graph_compiler/builtin_kernels/rowwise_softmax.mojo:70:5: note: constraint failed: reduce_dim must be in [0, rank)
error: The graph compiler could not elaborate the generated KGEN"""

RESHAPE = """Failed to create op 'ReshapeOp':
Inputs:
    input = TensorValue(dtype=float32, shape=[Dim(2), Dim(3)], device=cpu:0)
    new_shape = [Dim(4), Dim(2)]

Diagnostics:
    [reshape] input and output number of elements must match: #mosh<ape[2, 3]> : !mosh.ape != #mosh<ape[4, 2]> : !mosh.ape"""

COMPILE = ("Failed to compile the model. Please file an issue, all models should be correct by construction "
           "and this error should have been caught during construction.")


@pytest.mark.parametrize("text, says", [
    (MATMUL, "matrix multiplication (@) of shapes [2, 3] and [4, 5]: the left's last axis (3)"),
    (BROADCAST, "elementwise Add of shapes [2, 3] and [4, 5]: axis 1 has 3 on one side and 5"),
    (DTYPE, "mixing dtypes float32 and int64"),
    (DEVICE, "inputs live on different devices (cpu:0, gpu:0)"),
    (COMPILE, "could not compile it"),
    (RESHAPE, "a reshape from [2, 3] to [4, 2]"),
    (SOFTMAX_AXIS, "softmax over axis 5 of a tensor with 2 axes"),
])
def test_explain_names_the_failure(text, says):
    what, hint = max_errors.explain(ValueError(text))
    assert says in what, what
    assert hint


def test_softmax_axis_behind_the_compile_wrapper():
    """A compiled module raises RuntimeError('Failed to compile the model ...') from the real cause."""
    try:
        try:
            raise ValueError(SOFTMAX_AXIS)
        except ValueError as cause:
            raise RuntimeError(COMPILE) from cause
    except RuntimeError as exc:
        assert "softmax over axis 5" in max_errors.explain(exc)[0]


def test_axis_out_of_range_and_unknown_text():
    what = max_errors.explain(IndexError("Axis axis_2 out of range (expected to be in range of [-2, 1], but got 3)"))[0]
    assert what == "axis 3, which the tensor does not have: its axes are -2 .. 1"
    assert "axis that the tensor does not have" in max_errors.explain(IndexError("Axis out of range axis=3"))[0]
    assert max_errors.explain(ValueError("something else")) is None


def raise_in_learner_file(tmp_path: Path, text: str) -> CheckFailure:
    path = tmp_path / "step_07.py"
    path.write_text(f"def forward():\n    raise ValueError({text!r})\n")
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    with pytest.raises(CheckFailure) as info:
        with learner.learner_errors(7, path, "running GPT2MultiHeadAttention"):
            namespace["forward"]()
    return info.value


def test_learner_errors_translates_then_shows_the_frame_then_the_raw_text(tmp_path):
    exc = raise_in_learner_file(tmp_path, MATMUL)
    msg = exc.message
    assert msg.startswith("step 07: running GPT2MultiHeadAttention failed inside MAX: a matrix multiplication")
    assert msg.index("where:") < msg.index("step_07.py\", line 2, in forward") < msg.index("MAX said (ValueError):")
    assert "Matrix multiplication input lhs (shape [2, 3])" in msg.split("MAX said")[1]
    assert "transpose(-1, -2)" in exc.hint


def test_compile_failure_does_not_tell_the_learner_to_file_an_issue_first(tmp_path):
    msg = raise_in_learner_file(tmp_path, COMPILE).message
    assert msg.index("could not compile it") < msg.index("Please file an issue")


def test_other_errors_keep_the_old_report(tmp_path):
    msg = raise_in_learner_file(tmp_path, "plain").message
    assert "raised ValueError: plain" in msg and "inside MAX" not in msg
