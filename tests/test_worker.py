"""The worker runs the code under check; the judge only reads what it answers.

Each test starts a real worker (``gpt2course.check.remote.Remote``) on a small step file of
its own and asserts what the judge is told: values, the learner's errors, and how a worker
that exits, crashes or scribbles on the pipe ended. No MAX op runs here (about 2 s a worker).
"""

import sys

import numpy as np
import pytest

from gpt2course.check import learner, remote
from gpt2course.errors import CheckFailure


def worker(tmp_path, source: str, step: int = 1) -> remote.Remote:
    (tmp_path / f"step_{step:02d}.py").write_text(source)
    return remote.Remote(step, str(tmp_path), "cpu")


def test_values_errors_and_callbacks(tmp_path):
    r = worker(tmp_path, "import numpy as np\n"
                         "def double(x):\n    return x * 2\n"
                         "def call_back(f, x):\n    return f(x) + 1\n"
                         "def broken(x):\n    return x.nope\n"
                         "def todo():\n    raise NotImplementedError('TODO 2')\n")
    try:
        r.load()
        double = r.export("double")
        with r.doing_this("double"):
            out = double(np.arange(3, dtype=np.int64))
        assert out.dtype == np.int64 and out.tolist() == [0, 2, 4]
        with r.doing_this("calling back"):  # the worker calls a function that lives in the judge
            assert r.export("call_back")(lambda x: x * 10, np.float32(2.0)) == np.float32(21.0)
        with pytest.raises(CheckFailure, match="AttributeError") as exc, r.doing_this("broken"):
            r.export("broken")(np.zeros(2))
        assert "step_01.py" in exc.value.message and "return x.nope" in exc.value.message
        with pytest.raises(CheckFailure, match="does not define missing"):
            r.export("missing")
    finally:
        r.close()


def test_a_todo_arrives_as_todo_not_done(tmp_path):
    r = worker(tmp_path, "def todo():\n    # TODO 2\n    raise NotImplementedError('step 01, TODO 2')\n")
    try:
        r.load()
        with pytest.raises(learner.TodoNotDone) as exc, r.doing_this("todo"):
            r.export("todo")()
        assert exc.value.todo == 2
    finally:
        r.close()


@pytest.mark.parametrize("source, needles", [
    ("import os\nos._exit(0)\n", ["ended while importing", "exited with code 0"]),
    ("import sys\nsys.exit(3)\n", ["sys.exit(3)"]),
    ("import ctypes\nctypes.string_at(0)\n", ["SIGSEGV", "segmentation fault"]),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", ["SIGKILL", "memory"]),
])
def test_a_worker_that_ends_becomes_a_message(tmp_path, source, needles):
    r = worker(tmp_path, source)
    try:
        with pytest.raises(CheckFailure) as exc:
            r.load()
        for needle in needles:
            assert needle in exc.value.message, exc.value.message
    finally:
        r.close()


def test_a_death_later_and_a_fresh_worker(tmp_path):
    r = worker(tmp_path, "import os\ndef die():\n    os._exit(7)\ndef ok():\n    return 5\n")
    try:
        r.load()
        die, ok = r.export("die"), r.export("ok")
        with pytest.raises(CheckFailure, match="exited with code 7"), r.doing_this("die()"):
            die()
        with pytest.raises(CheckFailure, match="earlier worker"), r.doing_this("ok()"):
            ok()  # a proxy of the dead worker
        assert r.export("ok")() == 5  # a fresh worker, the step loaded again
    finally:
        r.close()


def test_garbage_on_the_pipe_is_a_message_not_a_crash(tmp_path):
    r = worker(tmp_path, "import os, sys\n"
                         "fd = int(sys.argv[sys.argv.index('--fds') + 1].split(',')[1])\n"
                         "def scribble():\n    os.write(fd, (40).to_bytes(8, 'little') + b'{not json' + b' ' * 31)\n"
                         "    import time; time.sleep(30)\n")
    try:
        r.load()
        with pytest.raises(CheckFailure, match="cannot read"), r.doing_this("scribble()"):
            r.export("scribble")()
    finally:
        r.close()


def test_judge_never_imports_the_step(tmp_path):
    marker = "gpt2course_test_worker_marker"
    r = worker(tmp_path, f"import sys\nsys.modules.setdefault('{marker}', sys)\nx = 1\n")
    try:
        r.load()
        assert r.export("x") == 1
        assert marker not in sys.modules  # the step's import ran in the worker only
    finally:
        r.close()
