"""The worker runs the code under check; the judge only reads what it answers.

Each test starts a real worker (``gpt2course.check.judge_end.WorkerLink``) on a small step file of
its own and asserts what the judge is told: values, the learner's errors, and how a worker
that exits, crashes or scribbles on the pipe ended. No MAX op runs here (about 2 s a worker), but
in the one test that says how the worker runs MAX's eager ops.
"""

import sys

import numpy as np
import pytest

from gpt2course.check import judge_end, learner, wire
from gpt2course.errors import CheckFailure


def worker(tmp_path, source: str, step: int = 1) -> judge_end.WorkerLink:
    (tmp_path / f"step_{step:02d}.py").write_text(source)
    return judge_end.WorkerLink(step, str(tmp_path), "cpu")


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
            times_ten = wire.callback("times ten", lambda x: x * 10)
            assert r.export("call_back")(times_ten, np.float32(2.0)) == np.float32(21.0)
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
        with pytest.raises(judge_end.WorkerRefused, match="not JSON"), r.doing_this("scribble()"):
            r.export("scribble")()
    finally:
        r.close()


# A hostile step writes its own messages on the pipe to the judge (the worker's side of the pipe
# is its process: nothing in the worker's code binds it). Each frame is what it sends while the
# judge's third request (the call of ``attack``) runs; the judge must refuse every one, name what
# was asked, and run nothing of its own.
HOSTILE = {
    "getattr of a dunder": ({"type": "getattr", "id": 3, "target": 1, "name": "__globals__"},
                            ["'getattr' of '__globals__'"]),
    "a call of a plain name": ({"type": "call", "id": 3, "target": 1, "name": "model"}, ["'call' of 'model'"]),
    "a callback never handed out": ({"type": "callback", "id": 3, "name": "__builtins__", "value": [[], {}]},
                                    ["'__builtins__'", "did not hand"]),
    "a callback out of turn": ({"type": "callback", "id": 2, "name": "model", "value": [[], {}]},
                               ["request 2 while request 3"]),
    "an object of the judge's as an argument": (
        {"type": "callback", "id": 3, "name": "model", "value": [[{"$j": 1}], {}]}, ["'$j'"]),
    "a reply carrying the judge's object": ({"type": "reply", "id": 3, "value": {"$j": 1}}, ["'$j'"]),
    "a reply carrying a callable": ({"type": "reply", "id": 3, "value": {"$callback": "model"}},
                                    ["'$callback'"]),
    "a generator by name": ({"type": "reply", "id": 3, "value": {"$rng": {"bit_generator": "seed"}}},
                            ["'$rng'"]),
    "an array it does not carry": ({"type": "reply", "id": 3, "value": {"$nd": 5}}, ["array '5'"]),
    "a reply to an earlier request": ({"type": "reply", "id": 1, "value": 1}, ["request 1 while request 3"]),
    "a deeply nested value": ({"type": "reply", "id": 3, "value": "DEEP"}, ["nested too deep"]),
}


def hostile_step(frame: dict) -> str:
    import json

    data = json.dumps(frame).replace('"DEEP"', "[" * 5000 + "]" * 5000)
    return ("import os, sys\n"
            "fd = int(sys.argv[sys.argv.index('--fds') + 1].split(',')[1])\n"
            f"DATA = {data.encode()!r}\n"
            "def attack(model):\n"
            "    os.write(fd, len(DATA).to_bytes(8, 'little') + DATA)\n"
            "    import time; time.sleep(30)\n")


@pytest.mark.parametrize("name", HOSTILE)
def test_the_judge_answers_only_registered_callbacks(tmp_path, name):
    frame, needles = HOSTILE[name]
    asked = []
    r = worker(tmp_path, hostile_step(frame))
    try:
        r.load()
        with pytest.raises(judge_end.WorkerRefused) as exc, r.doing_this("attack(model)"):
            r.export("attack")(wire.callback("model", lambda *a: asked.append(a) or 0))
        for needle in needles:
            assert needle in exc.value.message, exc.value.message
        assert asked == [] and r.refusals and r.proc is None  # nothing ran; the worker is gone
    finally:
        r.close()


def test_a_huge_message_is_refused_before_it_is_read(tmp_path):
    r = worker(tmp_path, "import os, sys\n"
                         "fd = int(sys.argv[sys.argv.index('--fds') + 1].split(',')[1])\n"
                         "def attack():\n    os.write(fd, (1 << 40).to_bytes(8, 'little'))\n"
                         "    import time; time.sleep(30)\n")
    try:
        r.load()
        with pytest.raises(judge_end.WorkerRefused, match="header of 1099511627776 bytes"), r.doing_this("attack()"):
            r.export("attack")()
    finally:
        r.close()


def test_the_judges_vocabulary_is_fixed():
    """What the judge reads from a worker, and what it answers, are listed constants."""
    assert wire.JUDGE_ANSWERS == ("callback",)
    assert wire.JUDGE_READS == ("reply", "raise", "say", "fatal", "callback")
    kinds = {t.__struct_config__.tag for t in wire.FROM_WORKER.__args__}
    assert kinds == set(wire.JUDGE_READS)
    assert set(wire.TO_JUDGE) == {"$float", "$nd", "$scalar", "$tuple", "$dict", "$w"}


def test_a_callback_passes_plain_values_and_nothing_else(tmp_path):
    r = worker(tmp_path, "import numpy as np\n"
                         "def relay(f, x):\n    return f(x, scale=np.float32(2))\n"
                         "def smuggle(f):\n    return f(relay)\n"
                         "def keep(f):\n    global KEPT\n    KEPT = f\n"
                         "def later():\n    return KEPT(1)\n")
    try:
        r.load()
        with r.doing_this("relay"):
            got = r.export("relay")(wire.callback("f", lambda x, scale: {"y": x * scale}), np.arange(3))
        assert got["y"].tolist() == [0, 2, 4]
        with pytest.raises(CheckFailure, match="cannot be passed"), r.doing_this("smuggle"):
            r.export("smuggle")(wire.callback("f", lambda g: 0))  # a function of the worker's
        with r.doing_this("keep"):
            r.export("keep")(wire.callback("f", lambda x: x))
        with pytest.raises(CheckFailure, match="only while"), r.doing_this("later"):
            r.export("later")()  # kept for later: the judge never sees the call
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


def test_a_worker_runs_eager_max_without_background_compiles(tmp_path, monkeypatch):
    """MAX's default eager executor would also compile each eager graph in a pool of processes,
    one per core, that a check (one run of each graph, then exit) never uses: the worker runs
    max_install.EAGER_EXECUTOR instead, unless the learner's environment names one."""
    from gpt2course import max_install

    monkeypatch.delenv("MAX_EAGER_EXECUTOR", raising=False)
    source = ("import os\nimport numpy as np\n"
              "def eager():\n"
              "    from max.experimental import compile_pool\n"
              "    from max.experimental.tensor import Tensor\n"
              "    x = Tensor.from_dlpack(np.ones(3, dtype=np.float32))\n"
              "    values = np.from_dlpack(x * x + x).tolist()\n"
              "    return values, os.environ.get('MAX_EAGER_EXECUTOR'), compile_pool.pool.cache_info().currsize\n")
    r = worker(tmp_path, source)
    try:
        r.load()
        with r.doing_this("an eager op"):
            values, executor, pools = r.export("eager")()
    finally:
        r.close()
    assert values == [2.0, 2.0, 2.0]
    assert executor == max_install.EAGER_EXECUTOR and pools == 0, (executor, pools)
    from max.experimental import executor as max_executor
    assert max_install.EAGER_EXECUTOR in max_executor._EXECUTORS, "this MAX no longer has the executor"
    monkeypatch.setenv("MAX_EAGER_EXECUTOR", "interpreter")
    assert max_install.worker_env()["MAX_EAGER_EXECUTOR"] == "interpreter"
