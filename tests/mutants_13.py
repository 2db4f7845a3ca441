"""Plausible mistakes in step 13, as text replacements on solutions/solution_13.py.

Each (name, old, new): replacing ``old`` (which occurs once in the solution)
by ``new`` gives a step_13.py that the check must fail. Used by the honesty
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
]
