import os

# The tests never contact the real Hugging Face Hub: everything runs offline unless a test
# points huggingface_hub at a server of its own on 127.0.0.1 (tests/test_hub.py's hf_home).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["gpt2course.check.plugin"]
