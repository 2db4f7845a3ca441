"""Where the weights come from: real GPT-2 when it is on disk, else seeded local checkpoints.

No network is used at any time. A seeded checkpoint is a real Hugging Face
checkpoint folder (config.json + model.safetensors) written by
``transformers.GPT2LMHeadModel.save_pretrained`` from a seeded random model, so
it is loaded through exactly the path a downloaded GPT-2 takes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def seeded_checkpoint(name: str = "small") -> Path:
    """Builds (once) and returns the folder of the seeded checkpoint ``name``."""
    if name not in CONFIGS:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {sorted(CONFIGS)}")
    folder = cache_dir() / "checkpoints" / f"seeded-{name}-{SEED}"
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(GPT2Config(**CONFIGS[name]))
    with torch.no_grad():
        # Hugging Face initialises LayerNorm to 1/0 and biases to 0. Random values
        # make a check notice a forgotten bias or weight.
        for pname, p in model.named_parameters():
            if pname.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    # Write to a temporary folder and rename, so a killed build leaves nothing half-written.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    model.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def find_pretrained() -> Path | None:
    """Real GPT-2 from the local Hugging Face cache, if it is there (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download("gpt2", local_files_only=True,
                                      allow_patterns=["config.json", "model.safetensors"]))
    except Exception:
        return None
    if (path / "model.safetensors").exists() and (path / "config.json").exists():
        return path
    return None


def resolve_weights(spec: str | None = None, *, fallback: str = "124m") -> Weights:
    """``--weights`` resolution: a path, "seeded-NAME", or (None) real GPT-2 if cached, else seeded."""
    if spec and spec.startswith("seeded"):
        name = spec.split("-", 1)[1] if "-" in spec else fallback
        return Weights(seeded_checkpoint(name), f"seeded random GPT-2 ({name} shapes, seed {SEED}): "
                       "its text is noise", False)
    if spec:
        path = Path(spec).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"--weights {spec}: no config.json there. Give a Hugging Face GPT-2 checkpoint "
                "folder (config.json + model.safetensors).")
        return Weights(path, f"checkpoint at {path}", True)
    found = find_pretrained()
    if found is not None:
        return Weights(found, f"pretrained GPT-2 from the local Hugging Face cache ({found})", True)
    return Weights(seeded_checkpoint(fallback),
                   f"no pretrained GPT-2 in the local Hugging Face cache; using the seeded random "
                   f"checkpoint ({fallback} shapes, seed {SEED}): its text is noise", False)
