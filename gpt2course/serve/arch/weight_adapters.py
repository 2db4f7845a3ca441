"""Hugging Face GPT-2 safetensors -> the course model's parameter names and layouts.

The same rules as gpt2course/hf/weights.py (``load_hf_state`` + ``to_max``), in the form MAX's
pipeline asks for: a function from the checkpoint's named weights to ``WeightData``.
"""

from __future__ import annotations

import numpy as np
from max.graph.weights import WeightData, Weights

from gpt2course.hf.weights import CONV1D_SUFFIXES

SKIP_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # old checkpoints' causal-mask buffers


# ANCHOR: adapter
def convert_safetensor_state_dict(state_dict: dict[str, Weights], **_unused) -> dict[str, WeightData]:
    out: dict[str, WeightData] = {}
    for key, value in state_dict.items():
        if key.endswith(SKIP_SUFFIXES):
            continue
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        arr = np.array(np.from_dlpack(value.data()), dtype=np.float32)  # own, contiguous copy
        if name.endswith(CONV1D_SUFFIXES):
            # Hugging Face's Conv1D stores [in, out]; MAX's Linear wants [out, in].
            arr = np.ascontiguousarray(arr.T)
        out[name] = WeightData.from_numpy(arr, name)
    if "lm_head.weight" not in out:
        # GPT-2 ties its LM head to the token embedding; checkpoints usually omit it.
        wte = np.array(out["transformer.wte.weight"].data)
        out["lm_head.weight"] = WeightData.from_numpy(wte, "lm_head.weight")
    return out
# ANCHOR_END: adapter
