"""`python -m gpt2course lens`: the logit lens, what each layer of GPT-2 would predict if it were the last.

    make lens ARGS='--prompt "The Eiffel Tower is in the city of"'
    make lens ARGS='--prompt "..." --weights gpt2-medium --out lens/'

Every block's output goes through the model's own final LayerNorm (ln_f) and LM head, as the
last block's does, giving one set of logits per layer. The command prints, per layer and
position, the most likely next token and its probability, and draws the same table as a
picture (``lens.png`` and ``lens.svg``). The last layer's lens is the model's output itself.

The lens runs on the course's reference model (solutions/solution_11.py) as one MAX graph
compiled for any prompt length: the same modules as the model, with every block's output
read out (one compile the first time, cached after). tests/test_lens.py checks every layer
against Hugging Face's output_hidden_states put through Hugging Face's ln_f and lm_head.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2course.check.command import add_target_device
from gpt2course.hf import checkpoints, hub, tokenizer
from gpt2course.hf.weights import CheckpointError


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _lens_module_class():
    from max.dtype import DType
    from max.experimental.nn import Module
    from max.experimental.tensor import Tensor

    class LogitLens(Module):
        """The reference GPT-2 with each block's output put through ln_f and lm_head."""

        def __init__(self, model):
            self.model = model

        def forward(self, input_ids):
            body = self.model.transformer
            positions = Tensor.arange(input_ids.shape[-1], dtype=DType.int64, device=input_ids.device)
            hidden = body.wte(input_ids) + body.wpe(positions)
            lens = []
            for block in body.h:
                hidden = block(hidden)
                lens.append(self.model.lm_head(body.ln_f(hidden)))
            return tuple(lens)

    return LogitLens


@dataclass
class Lens:
    """Per layer (block 0 .. n-1) and position: the lens's logits [n_layer, seq, vocab]."""

    ids: list[int]
    logits: np.ndarray

    def probabilities(self) -> np.ndarray:
        x = self.logits.astype(np.float64)
        x = np.exp(x - x.max(-1, keepdims=True))
        return x / x.sum(-1, keepdims=True)

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """(token [n_layer, seq], its probability [n_layer, seq])."""
        probs = self.probabilities()
        token = probs.argmax(-1)
        return token, np.take_along_axis(probs, token[..., None], -1)[..., 0]


class LensModel:
    """The lens graph, compiled once for [batch, seq] with a checkpoint's weights."""

    def __init__(self, folder, *, device: str = "cpu", quiet: bool = False) -> None:
        from max.dtype import DType
        from max.experimental.tensor import default_device
        from max.graph import TensorType

        from gpt2course.check import execute
        from gpt2course.device import max_device
        from gpt2course.hf import weights as weights_mod
        from gpt2course.run.engine import _compile
        from solutions.solution_11 import MaxGPT2LMHeadModel

        config, state = weights_mod.load_max_state(Path(folder))
        self.config = weights_mod.course_config(config)
        self.dev = max_device(device)
        with default_device(self.dev):
            module = execute.build(lambda: _lens_module_class()(MaxGPT2LMHeadModel(self.config)), "the logit lens")
        ids_type = TensorType(DType.int64, ["batch", "seq"], device=self.dev)
        self.compiled = _compile(module, [ids_type], {"model." + k: v for k, v in state.items()}, self.dev,
                                 "the logit lens (GPT-2 with every block read out)", quiet)

    def __call__(self, ids: list[int]) -> Lens:
        from max.experimental.tensor import Tensor

        from gpt2course.check import execute

        x = Tensor.from_dlpack(np.asarray([ids], dtype=np.int64)).to(self.dev)
        outs = self.compiled(x)
        outs = outs if isinstance(outs, (tuple, list)) else [outs]
        return Lens(list(ids), np.stack([execute.to_host(o, "lens")[0] for o in outs]))


def _token_text(token: int) -> str:
    text = tokenizer.decode([int(token)])
    return text.replace("\n", "\\n").replace("\t", "\\t") if text.strip() else repr(text)


def table(lens: Lens) -> str:
    """Rows: layers, last first; columns: the prompt's positions; cells: top next token and its probability."""
    token, prob = lens.top()
    inputs = [_token_text(t) for t in lens.ids]
    cells = [[f"{_token_text(t)} {p:.2f}" for t, p in zip(token[layer], prob[layer])] for layer in range(len(token))]
    width = [max(len(inputs[i]), *(len(row[i]) for row in cells)) for i in range(len(inputs))]
    label = max(len("block 00"), len("input"))
    lines = ["  ".join([f"{'input':<{label}}"] + [f"{t:<{w}}" for t, w in zip(inputs, width)])]
    for layer in reversed(range(len(cells))):
        name = f"block {layer:02d}"
        lines.append("  ".join([f"{name:<{label}}"] + [f"{c:<{w}}" for c, w in zip(cells[layer], width)]))
    return "\n".join(lines)


def picture(lens: Lens, out: Path, title: str) -> list[Path]:
    """The table as a heat map (colour: the top token's probability), as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text in the SVG: small, searchable, selectable

    token, prob = lens.top()
    n_layer, seq = prob.shape
    fig, ax = plt.subplots(figsize=(2.0 + 0.8 * seq, 2.0 + 0.5 * n_layer), dpi=110)
    image = ax.imshow(prob, origin="lower", cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for layer in range(n_layer):
        for pos in range(seq):
            ax.text(pos, layer, _token_text(token[layer, pos])[:10], ha="center", va="center", fontsize=8,
                    color="white" if prob[layer, pos] > 0.6 else "black")
    ax.set_xticks(range(seq), [_token_text(t)[:10] for t in lens.ids], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layer), [f"block {i}" for i in range(n_layer)], fontsize=8)
    ax.set_xlabel("input token (each cell: the next token that layer predicts)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="probability of the top token", fraction=0.03)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "lens.png", out / "lens.svg"]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths


def cmd_lens(args) -> int:
    if not args.prompt:
        _err("error: --prompt is empty: give the text whose next tokens the layers should predict")
        return 2
    try:
        w = checkpoints.resolve_weights(args.weights, **hub.settings_from_env())
    except (FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return 2
    if w.pretrained or args.weights == "tiny-declaration":
        _err(f"weights: {w.description}")
    else:
        _err(f"note: {w.description}: a lens of random weights shows noise; a trained model (gpt2 in the "
             "Hugging Face cache) shows the layers' guesses forming")
    try:
        ids = tokenizer.encode(args.prompt)
        model = LensModel(w.path, device=args.device)
    except tokenizer.TokenizerUnavailable as exc:
        _err(f"error: {exc}")
        return 2
    except CheckpointError as exc:
        _err(f"error: cannot use this checkpoint: {exc}")
        return 2
    if len(ids) > model.config.n_positions:
        _err(f"error: the prompt is {len(ids)} tokens; the model reads at most {model.config.n_positions}")
        return 2
    lens = model(ids)
    print(table(lens))
    title = f"logit lens: {w.description.split(' (')[0]}"
    for path in picture(lens, Path(args.out), title):
        print(f"wrote {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lens", help="the logit lens: each layer's next-token guess, as a table and a picture",
                       description="Apply GPT-2's final LayerNorm and LM head to every block's output and "
                       "show, per layer and position, the most likely next token and its probability.")
    p.add_argument("--prompt", required=True, help="the text to look through")
    p.add_argument("--weights", default=None, help="as for gpt2: gpt2 (default, from the Hugging Face "
                   "cache), distilgpt2, gpt2-medium, ..., a folder, seeded-small / seeded-124m, or "
                   "tiny-declaration (a 4-layer GPT-2 the course trains on a public-domain text, offline)")
    p.add_argument("--out", default="lens", help="folder for lens.png and lens.svg (default lens/)")
    add_target_device(p, target=False)
    p.set_defaults(func=cmd_lens)
