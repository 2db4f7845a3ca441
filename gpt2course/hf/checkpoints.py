"""Where the weights come from: GPT-2 from the Hugging Face cache (or the Hub), else seeded.

A seeded checkpoint is a real Hugging Face checkpoint folder (config.json +
model.safetensors) written by ``transformers.GPT2LMHeadModel.save_pretrained``
from a seeded random model, so it is loaded through exactly the path a
downloaded GPT-2 takes. Named weights (gpt2, distilgpt2, a Hub repo id) come
through ``gpt2course.hf.hub``: the cache first, a download only when it is not
there and the Hub answers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpt2course import course

# The shapes the checks use. "small" keeps the reference fast; "124m" is GPT-2
# small's real shape. initializer_range is larger in "small" so that attention
# scores are far from uniform and mistakes (no mask, no scaling) show up.
CONFIGS: dict[str, dict] = {
    "small": dict(
        vocab_size=50257, n_positions=128, n_embd=64, n_layer=2, n_head=4,
        initializer_range=0.1,
    ),
    "124m": dict(
        vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
        initializer_range=0.02,
    ),
}
SEED = 1234
# The GPT-2 family's shapes, seeded: for benchmarks (`bench_generate --weights seeded-medium`),
# which time a shape, not what its weights say. The checks never use them.
FAMILY: dict[str, dict] = {
    name: dict(vocab_size=50257, n_positions=1024, n_embd=d, n_layer=n, n_head=h, initializer_range=0.02)
    for name, (n, d, h) in {"distilgpt2": (6, 768, 12), "medium": (24, 1024, 16),
                            "large": (36, 1280, 20), "xl": (48, 1600, 25)}.items()
}


@dataclass(frozen=True)
class Weights:
    path: Path
    description: str
    pretrained: bool


def cache_dir() -> Path:
    """The course's own cache (checkpoints, check results); GPT2_COURSE_CACHE overrides it."""
    base = os.environ.get("GPT2_COURSE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "gpt2-max-course"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def seeded_checkpoint(name: str = "small", seed: int = SEED, root: Path | None = None) -> Path:
    """Builds (once) and returns the folder of the seeded checkpoint ``name``: the public one
    in the course's cache, or, for a graded run's secret ``seed``, one under ``root``."""
    shapes = CONFIGS.get(name) or FAMILY.get(name)
    if shapes is None:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {sorted(CONFIGS) + sorted(FAMILY)}")
    folder = (Path(root) if root is not None else cache_dir() / "checkpoints") / f"seeded-{name}-{seed}"
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**shapes))
    with torch.no_grad():
        # Hugging Face initialises LayerNorm to 1/0 and biases to 0. Random values
        # make a check notice a forgotten bias or weight.
        for pname, p in model.named_parameters():
            if pname.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    return save_whole(model, folder)


def save_whole(model, folder: Path) -> Path:
    """``model.save_pretrained`` into ``folder`` through a temporary folder and a rename, so a
    killed build leaves nothing half-written; an older ``folder`` is replaced."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    model.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def find_pretrained(*, cache_dir: str | Path | None = None) -> Path | None:
    """Real GPT-2 from the local Hugging Face cache, if it is there and whole (never a request)."""
    from gpt2course.hf import hub

    return hub.cached("gpt2", cache_dir=cache_dir)


def _seeded(name: str) -> Weights:
    return Weights(seeded_checkpoint(name), f"seeded random GPT-2 ({name} shapes, seed {SEED}): "
                   "its text is noise", False)


def resolve_weights(spec: str | None = None, *, fallback: str = "124m", offline: bool | None = None,
                    endpoint: str | None = None, cache_dir: str | Path | None = None,
                    timeout: float | None = None, progress: bool = True) -> Weights:
    """``--weights`` resolution.

    * "seeded-NAME": the seeded checkpoint NAME (never a request);
    * "tiny-declaration": a tiny GPT-2 the course trains on a public-domain text (never a request);
    * a local folder, a name (gpt2, distilgpt2, gpt2-medium, gpt2-large, gpt2-xl) or a Hub
      repo id: ``hub.fetch`` (the Hugging Face cache, else a download); errors are one line
      (HubError / HubUnavailable / CheckpointError are ValueErrors, a missing folder a
      FileNotFoundError);
    * None (``make gpt2``): GPT-2 small from the cache, else downloaded when the Hub answers,
      else the seeded ``fallback`` with one line saying why and which command fetches GPT-2.

    ``offline``, ``endpoint`` and ``cache_dir`` go to ``hub.fetch`` (None: huggingface_hub's
    own settings); ``hub.settings_from_env()`` gives them from the environment.
    """
    from gpt2course.hf import hub

    if spec == "tiny-declaration":
        from gpt2course.hf.tiny_trained import tiny_trained_checkpoint

        return Weights(tiny_trained_checkpoint(), "tiny-declaration: a 4-layer GPT-2 trained by the course "
                       "on the Declaration of Independence (gpt2course/hf/tiny_trained.py), not GPT-2", False)
    if spec and spec.startswith("seeded"):
        return _seeded(spec.split("-", 1)[1] if "-" in spec else fallback)
    opts = dict(offline=offline, endpoint=endpoint, cache_dir=cache_dir, progress=progress,
                timeout=hub.DEFAULT_TIMEOUT if timeout is None else timeout)
    if spec:
        path = hub.fetch(spec, **opts)
        if hub.is_local(spec):
            return Weights(path, f"checkpoint at {path}", True)
        return Weights(path, f"{spec} from the Hugging Face cache ({path})", True)
    try:
        found = hub.fetch("gpt2", **opts)
    except hub.HubUnavailable as exc:
        why = "offline" if exc.reason == "offline" else f"the Hub did not answer ({exc})"
        return Weights(seeded_checkpoint(fallback),
                       f"{why}: using the seeded random checkpoint ({fallback} shapes, seed {SEED}; "
                       f"its text is noise); {course.command('download-gpt2')} fetches GPT-2 later", False)
    return Weights(found, f"pretrained GPT-2 from the Hugging Face cache ({found})", True)
