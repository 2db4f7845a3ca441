"""Step 01 check: GPT2Config holds GPT-2 small's numbers, as transformers.GPT2Config() does."""

from gpt2course.check import harness
from gpt2course.check.compare import expect_equal
from gpt2course.errors import CheckFailure

STEP = 1
FIELDS = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon"]


def make(step, **kwargs):
    cls = step.get("GPT2Config")
    with step.errors("GPT2Config(...)"):
        return cls(**kwargs)


def test_defaults(step):
    """defaults equal transformers.GPT2Config()'s"""
    config, hf = make(step), harness.config_defaults(FIELDS)
    has = step.describe(config)
    for field in FIELDS:
        if field not in has["fields"] and field not in has["attributes"]:
            raise CheckFailure(f"GPT2Config has no field {field}",
                               "keep Hugging Face's field names: they are how checkpoints name sizes")
        expect_equal(f"GPT2Config().{field}", getattr(config, field), hf[field],
                     hint=f"transformers.GPT2Config().{field} is {hf[field]!r}")


def test_is_dataclass(step):
    """a dataclass whose fields can be set by keyword (the checks build small models with it)"""
    cls = step.get("GPT2Config")
    if not step.describe(cls)["dataclass"]:
        raise CheckFailure("GPT2Config is not a dataclass", "keep the @dataclass decorator")
    config = make(step, n_layer=2, n_embd=64, n_head=4)
    expect_equal("GPT2Config(n_layer=2).n_layer", config.n_layer, 2)
    expect_equal("GPT2Config(n_embd=64).n_embd", config.n_embd, 64)
