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
