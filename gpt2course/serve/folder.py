"""The folder ``max serve --model`` gets: a checkpoint, GPT-2's tokenizer files, and the course's
serving settings, written under the course cache (the user's checkpoint folder is never touched).

MAX reads the tokenizer from the served folder (``tokenizer.json`` and friends), and a course
checkpoint (``seeded_checkpoint``, or a ``save_pretrained`` of a model alone) has none. So the
serve command builds ``<course cache>/serve/<name>-<hash>-<model>/``:

* ``config.json``, ``model.safetensors`` (and ``generation_config.json``): links to the checkpoint;
* the tokenizer files: links to the checkpoint's own when it has them, else the course's offline
  tokenizer (gpt2course/hf/tokenizer.py) saved with ``save_pretrained``;
* ``gpt2course-serve.json``: which model to run (solutions | steps), the learner's target, and
  how the reference model's Linear weights are stored (``dtype``: fp32 | bf16 | int8).
  The pipeline model in MAX's worker process reads it (arch/model.py): MAX offers a custom
  architecture no option of its own, and the served folder is the one thing both processes share.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SETTINGS_FILE = "gpt2course-serve.json"
MODELS = ("solutions", "steps")
CHECKPOINT_FILES = ("config.json", "model.safetensors", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


def read_settings(folder: str | Path) -> dict:
    """The served folder's settings; a folder without the file runs the reference model."""
    path = Path(folder) / SETTINGS_FILE
    from gpt2course.run.precision import DTYPES

    settings = {"model": "solutions", "target": "steps", "dtype": "fp32"}
    if path.exists():
        settings.update(json.loads(path.read_text()))
    if settings["model"] not in MODELS:
        raise ValueError(f"{path}: model {settings['model']!r} is not one of {MODELS}")
    if settings["dtype"] not in DTYPES:
        raise ValueError(f"{path}: dtype {settings['dtype']!r} is not one of {DTYPES}")
    return settings


def _link(src: Path, dest: Path) -> None:
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    os.symlink(src.resolve(), dest)


def servable_folder(checkpoint: str | Path, *, model: str = "solutions", target: str = "steps",
                    cache: Path | None = None, dtype: str = "fp32") -> Path:
    """Writes (again, cheaply) and returns the served folder for ``checkpoint`` and ``model``."""
    from gpt2course.hf import checkpoints, tokenizer

    if model not in MODELS:
        raise ValueError(f"model {model!r} is not one of {MODELS}")
    src = Path(checkpoint).expanduser().resolve()
    digest = hashlib.sha1(str(src).encode()).hexdigest()[:10]
    suffix = "" if dtype == "fp32" else f"-{dtype}"
    dest = (cache or checkpoints.cache_dir()) / "serve" / f"{src.name}-{digest}-{model}{suffix}"
    dest.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINT_FILES:
        if (src / name).exists():
            _link(src / name, dest / name)
    if (src / "tokenizer.json").exists():
        for name in TOKENIZER_FILES:
            if (src / name).exists():
                _link(src / name, dest / name)
    elif not (dest / "tokenizer.json").exists() or (dest / "tokenizer.json").is_symlink():
        for name in TOKENIZER_FILES:
            if (dest / name).is_symlink():
                (dest / name).unlink()
        tokenizer.load().save_pretrained(str(dest))
    settings = {"model": model, "target": target, "checkpoint": str(src), "dtype": dtype}
    (dest / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    return dest
