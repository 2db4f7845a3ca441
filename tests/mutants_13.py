"""Plausible mistakes in step 13, as text replacements on solutions/solution_13.py.

Each (name, old, new): replacing ``old`` (which occurs once in the solution)
by ``new`` gives a step_13.py that the check must fail; SAYS holds what the
failure must say, for those whose message names the mistake. Used by the honesty
tests; to try one by hand, write the mutated file as step_13.py in a folder and
run ``python -m gpt2course check 13 --target THAT_FOLDER``.
"""

MUTANTS = [
    # TODO 5: the new tokens embedded at positions 0.. instead of after the cache.
    ("positions not offset by the cache length",
     "positions = new_positions(past_length, seq_length, device=input_ids.device)",
     "positions = new_positions(0, seq_length, device=input_ids.device)"),
    # TODO 6: the block's incoming cache handed back instead of the grown one.
    ("stale cache: the cache is never appended to",
     "            keys.append(key)\n            values.append(value)",
     "            keys.append(past_key)\n            values.append(past_value)"),
    # TODO 3: attention over the new tokens' keys only; the cache is ignored.
    ("cache not read: keys and values of the new tokens only",
     "        key = F.concat([past_key, key], axis=2)\n        value = F.concat([past_value, value], axis=2)",
     "        key = key\n        value = value"),
    # TODO 1: positions that restart at 0.
    ("new_positions ignores past_length",
     "    return Tensor.arange(past_length, past_length + seq_length, out_dim=seq_length,",
     "    return Tensor.arange(0, seq_length, out_dim=seq_length,"),
    # TODO 2: the mask of step 02 without the cache: queries counted from 0.
    ("mask: query positions not offset",
     "    query_positions = new_positions(past_length, seq_length, device=device)",
     "    query_positions = Tensor.arange(0, seq_length, out_dim=seq_length, dtype=DType.int64, device=device)"),
    # TODO 8: decode feeds the whole sequence again on top of the cache.
    ("decode feeds every token again",
     "        logits, cache = model(next_token[:, None], cache)",
     "        logits, cache = model(ids, cache)"),
    # TODO 8: the grown cache thrown away; every decode step gets the prefill's cache.
    ("decode reuses the prefill's cache",
     "        logits, cache = model(next_token[:, None], cache)",
     "        logits, _ = model(next_token[:, None], cache)"),
    # The loop (given, as step 12's TODO 7): end-of-text ignored altogether.
    ("ignores end-of-text",
     "        if eos_token_id is not None:\n",
     "        if False:\n"),
    # A finished row keeps generating instead of emitting EOS.
    ("emits past end-of-text",
     "            next_token = np.where(finished, eos_token_id, next_token)\n",
     ""),
    # The loop stops when the first row finishes.
    ("stops at the first row's end-of-text",
     "if i == max_new_tokens - 1 or finished.all():",
     "if i == max_new_tokens - 1 or finished.any():"),
    # The loop before step 12's fix: no finished rows, stop only if all rows emit EOS at once.
    ("stops only when every row emits EOS at the same step",
     "        if eos_token_id is not None:\n"
     "            next_token = np.where(finished, eos_token_id, next_token)\n"
     "            finished |= next_token == eos_token_id\n"
     "        ids = np.concatenate([ids, next_token[:, None]], axis=1)\n"
     "        if i == max_new_tokens - 1 or finished.all():",
     "        ids = np.concatenate([ids, next_token[:, None]], axis=1)\n"
     "        if i == max_new_tokens - 1 or (eos_token_id is not None and np.all(next_token == eos_token_id)):"),
]

SAYS = {
    "positions not offset by the cache length": "embedded at position 0",
    "ignores end-of-text": "ignores eos_token_id",
    "emits past end-of-text": "after its end-of-text",
    "stops at the first row's end-of-text": "ONE row",
    "stops only when every row emits EOS at the same step": "at the SAME step",
}
