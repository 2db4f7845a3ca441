"""Correct answers written differently from the solution, one list per step: (name, text in the
solution, replacement). tests/test_honesty.py applies each to the solution (the text must occur
exactly once) and proves the step's check still passes: a check must judge what a learner's code
computes, not whether it uses the solution's operations.

Each replacement stays inside one TODO's fence, so the file is still a finished step. Several use
an op family the solution does not (F.where, F.tanh, F.rsqrt, ...): the first run of one on a
machine pays MAX's first compile of it (bench/bench_edit.py measures what that costs).
"""

ALTERNATIVES: dict[int, list[tuple[str, str, str]]] = {
    2: [
        # TODO 2 from positions: query i sits at num_tokens + i and sees key columns j <= that.
        ("mask from arange comparisons and F.where",
         "    return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)\n",
         "    rows = Tensor.arange(sequence_length, dtype=DType.int64, device=device)\n"
         "    cols = Tensor.arange(total, dtype=DType.int64, device=device)\n"
         "    allowed = cols.reshape([1, total]) <= rows.reshape([sequence_length, 1]) + num_tokens\n"
         "    return F.where(allowed, 0.0, mask)\n"),
        # TODO 2 in NumPy, handed to MAX with from_dlpack.
        ("mask built in NumPy, then Tensor.from_dlpack",
         "    return F.band_part(mask, num_lower=None, num_upper=num_tokens, exclude=True)\n",
         "    import numpy as np\n"
         "    blocked = np.triu(np.ones((sequence_length, total), dtype=bool), k=num_tokens + 1)\n"
         "    values = np.where(blocked, -np.inf, 0.0).astype(np.float32)\n"
         "    return Tensor.from_dlpack(values).to(device).cast(dtype)\n"),
    ],
    3: [
        ("mean and explicit variance, F.sqrt",
         "        return F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)\n",
         "        mean = F.mean(x, axis=-1)\n"
         "        centered = x - mean\n"
         "        variance = F.mean(centered * centered, axis=-1)\n"
         "        return centered / F.sqrt(variance + self.eps) * self.weight + self.bias\n"),
        ("mean and variance, F.rsqrt",
         "        return F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)\n",
         "        centered = x - F.mean(x, axis=-1)\n"
         "        inv_std = F.rsqrt(F.mean(centered ** 2, axis=-1) + self.eps)\n"
         "        return centered * inv_std * self.weight + self.bias\n"),
    ],
    4: [
        ("GELU's tanh formula written out with F.tanh",
         '        hidden_states = F.gelu(hidden_states, approximate="tanh")\n',
         "        x = hidden_states\n"
         "        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)  # sqrt(2 / pi)\n"
         "        hidden_states = 0.5 * x * (1.0 + F.tanh(inner))\n"),
        ("GELU's tanh form as x * sigmoid(2z)",
         '        hidden_states = F.gelu(hidden_states, approximate="tanh")\n',
         "        x = hidden_states\n"
         "        hidden_states = x * F.sigmoid(1.5957691216057308 * (x + 0.044715 * x ** 3))\n"),
    ],
    6: [
        ("positions from NumPy's arange",
         "        positions = Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)\n",
         "        import numpy as np\n"
         "        positions = Tensor.from_dlpack(np.arange(int(seq), dtype=np.int64)).to(input_ids.device)\n"),
        ("positions as arange(0, seq, 1) with out_dim",
         "        positions = Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)\n",
         "        positions = Tensor.arange(0, seq, 1, out_dim=seq, dtype=DType.int64, device=input_ids.device)\n"),
    ],
    7: [
        ("scale applied to q before q @ k^T",
         "        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)\n",
         "        scores = (query * (1.0 / math.sqrt(self.head_dim))) @ key.transpose(-1, -2)\n"),
        ("softmax written as exp / sum",
         "        weights = F.softmax(scores, axis=-1)\n",
         "        exp = F.exp(scores - F.max(scores, axis=-1))\n"
         "        weights = exp / F.sum(exp, axis=-1)\n"),
    ],
    8: [
        ("sum written inline, sublayer output first",
         "        return apply_residual_connection(x, self.sublayer(self.ln(x)))\n",
         "        normalized = self.ln(x)\n"
         "        return self.sublayer(normalized) + x\n"),
        ("F.add",
         "    return input_tensor + sublayer_output\n",
         "    from max.experimental import functional as F\n"
         "    return F.add(sublayer_output, input_tensor)\n"),
    ],
    12: [
        ("draws by inverse CDF on np.cumsum, one uniform per row",
         "    return np.array([rng.choice(vocab_size, p=row) for row in probs], dtype=np.int64)\n",
         "    cdf = np.cumsum(probs, axis=-1)\n"
         "    u = (1.0 - rng.random(len(probs)))[:, None] * cdf[:, -1:]  # in (0, total]\n"
         "    return np.minimum((cdf < u).sum(axis=-1), vocab_size - 1).astype(np.int64)\n"),
        ("top-k threshold from np.partition",
         "        kth_largest = np.sort(scaled, axis=-1)[:, -top_k][:, None]\n",
         "        kth_largest = np.partition(scaled, -top_k, axis=-1)[:, -top_k:].min(axis=-1, keepdims=True)\n"),
        ("greedy via the sorted order",
         "        return np.argmax(logits, axis=-1).astype(np.int64)\n",
         "        return np.argsort(-logits, axis=-1, kind=\"stable\")[:, 0].astype(np.int64)\n"),
    ],
    14: [
        # TODO 1 as x - logsumexp(x), the log-sum-exp taken with np.logaddexp (stable by itself).
        ("log-softmax as x minus np.logaddexp.reduce",
         "    shifted = logits - logits.max(axis=-1, keepdims=True)\n"
         "    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))\n",
         "    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)\n"),
        # TODO 3 with fancy indexing over flattened scored positions instead of take_along_axis.
        ("cross-entropy by indexing the scored positions",
         "    scored = targets != IGNORE_INDEX\n"
         "    log_probs = log_softmax(predictions)\n"
         "    index = np.where(scored, targets, 0)[..., None]\n"
         "    picked = np.take_along_axis(log_probs, index, axis=-1)[..., 0]\n"
         "    return float(-picked[scored].mean())\n",
         "    rows, cols = np.nonzero(targets != IGNORE_INDEX)\n"
         "    log_probs = log_softmax(predictions[rows, cols])  # [n_scored, vocab]\n"
         "    return float(-log_probs[np.arange(len(rows)), targets[rows, cols]].sum() / len(rows))\n"),
        # TODO 4 as a while loop on the scored frontier.
        ("windows from a while loop",
         "    windows, scored_until = [], 0\n"
         "    for begin in range(0, n_tokens, stride):\n"
         "        end = min(begin + window, n_tokens)\n"
         "        windows.append((begin, end, end - scored_until))\n"
         "        scored_until = end\n"
         "        if end == n_tokens:\n"
         "            break\n"
         "    return windows\n",
         "    windows, begin, end = [], 0, 0\n"
         "    while end < n_tokens:\n"
         "        new_end = min(begin + window, n_tokens)\n"
         "        windows.append((begin, new_end, new_end - end))\n"
         "        begin, end = begin + stride, new_end\n"
         "    return windows\n"),
        # TODO 5 batched: the windows of equal length go to the model together, one call each.
        ("windows of equal length in one batch",
         "    total_nll, total_scored = 0.0, 0\n"
         "    for begin, end, n_new in sliding_windows(ids.size, window, stride):\n"
         "        chunk = ids[begin:end][None, :]\n"
         "        labels = chunk.copy()\n"
         "        labels[:, : chunk.shape[1] - n_new] = IGNORE_INDEX\n"
         "        n_scored = int((labels[:, 1:] != IGNORE_INDEX).sum())\n"
         "        total_nll += cross_entropy(model(chunk), labels) * n_scored\n"
         "        total_scored += n_scored\n",
         "    groups = {}\n"
         "    for begin, end, n_new in sliding_windows(ids.size, window, stride):\n"
         "        groups.setdefault(end - begin, []).append((begin, end, n_new))\n"
         "    total_nll, total_scored = 0.0, 0\n"
         "    for length, group in groups.items():\n"
         "        batch = np.stack([ids[b:e] for b, e, _ in group])\n"
         "        labels = batch.copy()\n"
         "        for row, (_, _, n_new) in enumerate(group):\n"
         "            labels[row, : length - n_new] = IGNORE_INDEX\n"
         "        n_scored = int((labels[:, 1:] != IGNORE_INDEX).sum())\n"
         "        total_nll += cross_entropy(model(batch), labels) * n_scored\n"
         "        total_scored += n_scored\n"),
        # TODO 6 through base 2 on both sides: 2 ** (nats / ln 2) = e ** nats.
        ("perplexity as 2 ** bits",
         "    return float(np.exp(total_nll / total_scored))\n",
         "    bits = total_nll / total_scored / np.log(2)\n"
         "    return float(2.0 ** bits)\n"),
    ],
    15: [
        # TODO 1 with the max-norm of each row, and a zero row's scale set after the division.
        ("scales from np.linalg.norm(ord=inf), zero rows fixed afterwards",
         "    absmax = np.abs(weight).max(axis=1)\n"
         "    return np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)\n",
         "    scale = (np.linalg.norm(weight, ord=np.inf, axis=1) / QMAX).astype(np.float32)\n"
         "    scale[scale == 0] = 1.0\n"
         "    return scale\n"),
        # TODO 1 with a floor under the maximum: a zero row gets a tiny positive scale, not 1.
        ("scales with a floor (np.maximum) instead of np.where",
         "    absmax = np.abs(weight).max(axis=1)\n"
         "    return np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)\n",
         "    absmax = np.max(np.abs(weight), axis=1)\n"
         "    return (np.maximum(absmax, np.float32(1e-30)) / np.float32(QMAX)).astype(np.float32)\n"),
        # TODO 2 multiplying by the inverse scale (float32 may round a half-way value the other
        # way: the check accepts either neighbour there), np.rint, and the clip by hand.
        ("quantize by the inverse scale, np.rint, minimum/maximum",
         "    q = np.round(weight / scale[:, None])\n"
         "    return np.clip(q, -QMAX, QMAX).astype(np.int8)\n",
         "    q = np.rint(weight * (1.0 / scale)[:, None])\n"
         "    return np.minimum(np.maximum(q, -QMAX), QMAX).astype(np.int8)\n"),
        # TODO 4 with the functional API (the same graph as the solution's).
        ("the head with F.matmul, F.transpose and F.cast",
         "        logits = hidden_states @ self.weight.cast(DType.float32).T\n",
         "        from max.experimental import functional as F\n"
         "        logits = F.matmul(hidden_states, F.transpose(F.cast(self.weight, DType.float32), 0, 1))\n"),
        # TODO 4 dequantizing the weight first, as a Linear over W ~ q * scale (its own graph).
        ("the head from the dequantized weight",
         "        logits = hidden_states @ self.weight.cast(DType.float32).T\n"
         "        return logits * self.scale\n",
         "        dequantized = self.weight.cast(DType.float32) * self.scale.reshape([self.scale.shape[0], 1])\n"
         "        return hidden_states @ dequantized.T\n"),
    ],
}
