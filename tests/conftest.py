import os

from gpt2course.max_install import MAX_LEAKED

# The tests never contact the real Hugging Face Hub: everything runs offline unless a test
# points huggingface_hub at a server of its own on 127.0.0.1 (tests/test_hub.py's hf_home).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["gpt2course.check.plugin"]

_BEFORE = {k: os.environ.get(k) for k in MAX_LEAKED}


def _unleak() -> None:
    """A test that ran MAX in this process leaves PYTHONEXECUTABLE behind (max_install.py), set
    in the C environment, not in os.environ; a later test's `python` child would then run
    outside the venv. unsetenv clears it where os.environ does not see it."""
    for key, value in _BEFORE.items():
        if value is None:
            os.environ.pop(key, None)
            os.unsetenv(key)
        else:
            os.environ[key] = value


def pytest_runtest_setup(item):
    _unleak()


def pytest_runtest_teardown(item, nextitem):
    _unleak()


# On a new machine most of the suite's time is MAX compiling kernels, once. tests/test_honesty.py
# compiles every step's reference first, two at a time (`python -m gpt2course warm --jobs 2`), so
# it runs first: every later file then finds the kernels and graphs it shares with the steps in
# MAX's cache instead of compiling them one after another. (bench/bench_suite.py --cold measures it.)
RUN_FIRST = ("test_honesty.py",)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 0 if item.path.name in RUN_FIRST else 1)  # stable: the rest keep their order
