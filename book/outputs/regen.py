"""Regenerates the check outputs the book shows (book/outputs/step_NN.*.txt).

    .venv/bin/python book/outputs/regen.py 01 02 03     # or no arguments: every step with outputs

For each step it runs the real check three ways and keeps what a learner sees:

    step_NN.skeleton.txt   the untouched skeleton  (python -m gpt2course check NN)
    step_NN.solution.txt   the reference solution  (... --target solutions)
    step_NN.mistake.txt    the solution with one typical mistake (MISTAKES below), run
                           from a temporary folder; the folder's name is written as
                           steps/step_NN.py, the file where a learner would make it

tests/test_book.py checks that the sub-checks listed in these files are still the
ones tests/test_step_NN.py runs, so a changed check shows up as a failing test.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent

# step -> (text in the solution, what replaces it): one mistake a learner plausibly makes.
MISTAKES = {
    1: ("layer_norm_epsilon: float = 1e-5", "layer_norm_epsilon: float = 1e-6"),
    2: ("return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)",
        "return F.band_part(mask, num_lower=None, num_upper=0, exclude=True)"),
    3: ("self.weight = Tensor.ones([dim])", "self.gamma = Tensor.ones([dim])"),
    4: ('F.gelu(hidden_states, approximate="tanh")', "F.gelu(hidden_states)"),
    # The original Transformer paper scales embeddings by sqrt(d_model); GPT-2 does not.
    5: ("return self.wte(input_ids)", "return self.wte(input_ids) * 768 ** 0.5"),
    6: ("return self.wpe(positions)", "return self.wpe(positions + 1)"),
    # Scores left unscaled: softmax saturates as head_dim grows.
    7: ("/ math.sqrt(self.head_dim)", "/ 1.0"),
    # Post-norm (the original Transformer's order): LayerNorm(x + sublayer(x)).
    8: ("return apply_residual_connection(x, self.sublayer(self.ln(x)))",
        "return self.ln(apply_residual_connection(x, self.sublayer(x)))"),
    # The MLP's output replaces the residual stream instead of being added to it.
    9: ("hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))",
        "hidden_states = self.mlp(self.ln_2(hidden_states))"),
    # Positions counted from 1.
    10: ("positions = Tensor.arange(seq, dtype", "positions = 1 + Tensor.arange(seq, dtype"),
    # A bias on the language-model head, which GPT-2 does not have.
    11: ("self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)",
         "self.lm_head = Linear(config.n_embd, config.vocab_size, bias=True)"),
    # Temperature multiplied instead of divided.
    12: ("    scaled = logits / temperature", "    scaled = logits * temperature"),
    # Positions after the cache restart at 0 (tests/mutants_13.py: "new_positions ignores past_length").
    13: ("    return Tensor.arange(past_length, past_length + seq_length, out_dim=seq_length,",
         "    return Tensor.arange(0, seq_length, out_dim=seq_length,"),
    # The targets not shifted: each position scored against its own token.
    14: ("    predictions = logits[:, :-1, :]\n    targets = labels[:, 1:]",
         "    predictions = logits\n    targets = labels"),
    # No rounding: astype(np.int8) truncates toward zero (tests/mutants.py: "no rounding").
    15: ("    q = np.round(weight / scale[:, None])\n", "    q = weight / scale[:, None]\n"),
}
STEPS_WITH_OUTPUTS = list(range(1, 16))


def run(step: int, target: str) -> str:
    cmd = [sys.executable, "-m", "gpt2course", "check", f"{step:02d}", "--target", target]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


def mistake(step: int) -> str:
    old, new = MISTAKES[step]
    source = (ROOT / "solutions" / f"solution_{step:02d}.py").read_text()
    if source.count(old) != 1:
        raise SystemExit(f"step {step:02d}: {old!r} is not exactly once in the solution; update MISTAKES")
    with tempfile.TemporaryDirectory(prefix="book-mistake-") as tmp:
        (Path(tmp) / f"step_{step:02d}.py").write_text(source.replace(old, new))
        text = run(step, tmp)
    text = text.replace(f"[target: {tmp},", "[target: steps,")
    text = text.replace(f"{tmp}/step_{step:02d}.py", f"steps/step_{step:02d}.py")
    return text


def main(argv: list[str]) -> int:
    steps = [int(a.lstrip("s")) for a in argv] or STEPS_WITH_OUTPUTS
    for step in steps:
        for kind, make in (("skeleton", lambda s: run(s, "steps")),
                           ("solution", lambda s: run(s, "solutions")),
                           ("mistake", mistake)):
            if kind == "mistake" and step not in MISTAKES:
                continue
            text = make(step)
            if re.search(r"Traceback|INTERNALERROR", text):
                raise SystemExit(f"step {step:02d} {kind}: the check crashed:\n{text}")
            path = OUT / f"step_{step:02d}.{kind}.txt"
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({text.splitlines()[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
