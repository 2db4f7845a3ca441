"""Plausible mistakes, one list per step: (name, text in the solution, replacement, what the
failure should say). tests/test_honesty.py applies each to the solution and proves the step's
check fails on it -- and names the mistake where the check knows it."""

MUTANTS: dict[int, list[tuple[str, str, str, str]]] = {
    1: [
        ("epsilon 1e-6", "layer_norm_epsilon: float = 1e-5", "layer_norm_epsilon: float = 1e-6",
         "layer_norm_epsilon: expected 1e-05, got 1e-06"),
        ("context 512", "n_positions: int = 1024", "n_positions: int = 512", "n_positions: expected 1024"),
    ],
    2: [
        ("diagonal masked", "num_upper=num_tokens, exclude=True", "num_upper=num_tokens - 1, exclude=True",
         "values differ"),
        ("ignores num_tokens", "num_upper=num_tokens, exclude=True", "num_upper=0, exclude=True",
         "not shifted by num_tokens"),
    ],
    3: [
        ("epsilon too large", "epsilon=self.eps)", "epsilon=1e-3)", "values differ"),
        ("bias ignored", "beta=self.bias,", "beta=self.bias * 0,", "values differ"),
    ],
    4: [
        ("exact GELU", 'approximate="tanh"', 'approximate="none"', "exact (erf) GELU"),
        ("ReLU", 'F.gelu(hidden_states, approximate="tanh")', "F.relu(hidden_states)", "this is ReLU"),
    ],
    5: [
        ("ids shifted", "return self.wte(input_ids)", "return self.wte(input_ids + 1)", "values differ"),
        ("table one row short", "Embedding(config.vocab_size, dim", "Embedding(config.vocab_size - 1, dim",
         "wte.weight has shape"),
    ],
    6: [
        ("positions from 1", "positions = Tensor.arange(seq, dtype", "positions = 1 + Tensor.arange(seq, dtype",
         "positions start at 1"),
        ("looks up the token ids", "return self.wpe(positions)", "return self.wpe(input_ids % 7)", "wrong shape"),
    ],
    7: [
        ("no causal mask",
         "scores = scores + causal_mask(\n            seq, 0, dtype=scores.dtype, device=scores.device\n        )",
         "scores = scores", "no causal mask"),
        ("no 1/sqrt(head_dim) scaling", "/ math.sqrt(self.head_dim)", "/ 1.0", "not divided by sqrt(head_dim)"),
        ("split heads by reshape alone", "return x.reshape([batch, seq, self.n_head, self.head_dim]).transpose(1, 2)",
         "return x.reshape([batch, self.n_head, seq, self.head_dim])", "split_heads reshapes straight"),
        ("merge heads by reshape alone", "return x.transpose(1, 2).reshape([batch, seq, self.n_embd])",
         "return x.reshape([batch, seq, self.n_embd])", "merge_heads reshapes"),
    ],
    8: [
        ("no residual", "return apply_residual_connection(x, self.sublayer(self.ln(x)))",
         "return self.sublayer(self.ln(x))", "the input is not added back"),
        ("post-norm", "return apply_residual_connection(x, self.sublayer(self.ln(x)))",
         "return self.ln(apply_residual_connection(x, self.sublayer(x)))", "post-norm"),
    ],
    9: [
        ("MLP residual missing", "hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))",
         "hidden_states = self.mlp(self.ln_2(hidden_states))", "residual connection is missing"),
        ("parallel sublayers", "hidden_states = hidden_states + self.attn(self.ln_1(hidden_states))\n        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))",
         "hidden_states = hidden_states + self.attn(self.ln_1(hidden_states)) + self.mlp(self.ln_2(hidden_states))",
         "both sublayers read the block input"),
    ],
    10: [
        ("positions from 1", "positions = Tensor.arange(seq, dtype", "positions = 1 + Tensor.arange(seq, dtype",
         "every layer matches Hugging Face when chained"),
        ("no final LayerNorm", "return self.ln_f(hidden_states)", "return hidden_states",
         "values differ"),
        # Right for the small model's 2 layers only: what the 124M-shape sub-check is for.
        ("two blocks, the small model's count", "for _ in range(config.n_layer)", "for _ in range(2)",
         "GPT2Model (124m shapes): parameter names do not match"),
    ],
    11: [
        ("lm_head with bias", "Linear(config.n_embd, config.vocab_size, bias=False)",
         "Linear(config.n_embd, config.vocab_size, bias=True)", "unexpected: lm_head.bias"),
        ("softmax on the logits", "return self.lm_head(self.transformer(input_ids))",
         "return __import__('max.experimental.functional', fromlist=['softmax']).softmax(self.lm_head(self.transformer(input_ids)))",
         "these are probabilities"),
        # Right for the small model's 64 wide only: what the 124M-shape sub-check is for.
        ("head 64 wide, the small model's width", "Linear(config.n_embd, config.vocab_size, bias=False)",
         "Linear(64, config.vocab_size, bias=False)", "parameter lm_head.weight has shape [50257, 64]"),
    ],
    12: [
        ("temperature multiplied", "scaled = logits / temperature", "scaled = logits * temperature",
         "multiplied by the temperature"),
        ("top-k keeps one too many", "[:, -top_k][:, None]", "[:, -top_k - 1][:, None]", "keeps 4 tokens, one too many"),
        ("first position's logits", "model(input_ids)[:, -1, :]", "model(input_ids)[:, 0, :]",
         "LAST position"),
        ("reseeds the generator every token", "generate_next_token(model, ids, rng=rng, **sampling)",
         "generate_next_token(model, ids, rng=np.random.default_rng(seed), **sampling)", "reseeded"),
        ("softmax without subtracting the max", "exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))",
         "exp = np.exp(scaled)", "Subtract each row's max"),
        ("temperature after softmax",
         "exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))\n    probs = exp / exp.sum(axis=-1, keepdims=True)",
         "exp = np.exp(scaled * temperature - (scaled * temperature).max(axis=-1, keepdims=True))\n"
         "    probs = exp / exp.sum(axis=-1, keepdims=True) / temperature\n"
         "    probs = probs / probs.sum(axis=-1, keepdims=True)", "the temperature has no effect"),
        ("top-k keeps the k smallest",
         "kth_largest = np.sort(scaled, axis=-1)[:, -top_k][:, None]\n        scaled = np.where(scaled < kth_largest",
         "kth_largest = np.sort(scaled, axis=-1)[:, top_k - 1][:, None]\n        scaled = np.where(scaled > kth_largest",
         "SMALLEST"),
        ("ignores end-of-text", "        if eos_token_id is not None:\n", "        if False:\n", "ignores eos_token_id"),
        ("emits past end-of-text", "next_token = np.where(finished, eos_token_id, next_token)\n", "",
         "after its end-of-text"),
        ("stops at the first row's end-of-text", "if finished.all():", "if finished.any():", "ONE row"),
        ("appends the argmax, not the sample", "generate_next_token(model, ids, rng=rng, **sampling)",
         "model(ids)[:, -1, :].argmax(-1)", "not the sampled one"),
        ("one draw for the whole batch",
         "return np.array([rng.choice(vocab_size, p=row) for row in probs], dtype=np.int64)",
         "return rng.choice(vocab_size, size=len(probs), p=probs[0]).astype(np.int64)", "row 0's"),
        ("one random number shared by the rows",
         "return np.array([rng.choice(vocab_size, p=row) for row in probs], dtype=np.int64)",
         "u = rng.random()\n    return (np.cumsum(probs, axis=-1) < u).sum(axis=-1).astype(np.int64)",
         "share one random number"),
    ],
    14: [
        ("log-softmax without the maximum subtracted",
         "    shifted = logits - logits.max(axis=-1, keepdims=True)\n"
         "    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))",
         "    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))", "np.exp overflowed"),
        ("targets not shifted", "    predictions = logits[:, :-1, :]\n    targets = labels[:, 1:]",
         "    predictions = logits\n    targets = labels", "the targets are not shifted"),
        ("padding scored", "    return float(-picked[scored].mean())", "    return float(-picked.mean())",
         "padding is scored"),
        ("mean of each row's mean", "    return float(-picked[scored].mean())",
         "    return float(np.mean([-row[keep].mean() for row, keep in zip(picked, scored) if keep.any()]))",
         "a mean of each row's mean"),
        ("loss in bits", "    return float(-picked[scored].mean())",
         "    return float(-picked[scored].mean() / np.log(2))", "in bits (log base 2)"),
        ("the overlap scored twice", "        windows.append((begin, end, end - scored_until))",
         "        windows.append((begin, end, end - begin))", "scored more than once"),
        ("a mean of the windows' losses",
         "        total_nll += cross_entropy(model(chunk), labels) * n_scored\n        total_scored += n_scored",
         "        total_nll += cross_entropy(model(chunk), labels)\n        total_scored += 1",
         "averages the windows' losses"),
        ("perplexity as 2 ** loss", "    return float(np.exp(total_nll / total_scored))",
         "    return float(2 ** (total_nll / total_scored))", "2 to the power of the mean loss"),
    ],
    # Step 15: the five mistakes issue 22 names, and one more. The first four and the last
    # are NumPy and fail before the check compiles anything (with --fail-fast, no MAX graph);
    # "scales applied twice" is in the Module and compiles its own graph.
    15: [
        ("one scale for the whole matrix", "    absmax = np.abs(weight).max(axis=1)\n",
         "    absmax = np.abs(weight).max()\n", "one scale for the whole matrix"),
        ("a scale per column", "    absmax = np.abs(weight).max(axis=1)\n",
         "    absmax = np.abs(weight).max(axis=0)\n", "a scale per column"),
        ("no rounding", "    q = np.round(weight / scale[:, None])\n", "    q = weight / scale[:, None]\n",
         "no rounding"),
        ("no clipping", "    return np.clip(q, -QMAX, QMAX).astype(np.int8)\n", "    return q.astype(np.int8)\n",
         "not clipped"),
        ("scales applied twice", "        logits = hidden_states @ self.weight.cast(DType.float32).T\n",
         "        dequantized = self.weight.cast(DType.float32) * self.scale.reshape([self.scale.shape[0], 1])\n"
         "        logits = hidden_states @ dequantized.T\n", "the scales are applied twice"),
        ("the row's largest value, not its largest magnitude", "    absmax = np.abs(weight).max(axis=1)\n",
         "    absmax = weight.max(axis=1)\n", "not its largest magnitude"),
    ],
}

# Step 13's mistakes live beside its check (tests/mutants_13.py). The honesty suite runs
# the two caught by the cheap helper checks and two in the generation loop (a decode step
# given the prefill's cache; end-of-text ignored), caught by NumPy stand-in models, which the
# check runs before it compiles the model: none of the four compiles the 124M model. (The
# model sub-checks' power is the solution passing them and tests/test_step_13.py's traps.)
from mutants_13 import MUTANTS as _STEP_13, SAYS as _SAYS_13  # noqa: E402

_CHOSEN_13 = {"new_positions ignores past_length", "mask: query positions not offset",
              "decode reuses the prefill's cache", "ignores end-of-text"}
MUTANTS[13] = [(name, old, new, _SAYS_13.get(name, "")) for name, old, new in _STEP_13
               if name in _CHOSEN_13]
