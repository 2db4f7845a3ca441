"""The architecture config MAX's registry and memory planner read (KV sizes, longest sequence)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from max.pipelines.lib import upper_bounded_default
from max.pipelines.lib.interfaces.arch_config import ArchConfigWithAttentionKVCache


# ANCHOR: config
@dataclass
class GPT2ArchConfig(ArchConfigWithAttentionKVCache):
    DEFAULT_ENCODING: ClassVar[Any] = "float32"
    SUPPORTED_ENCODINGS: ClassVar[set[Any]] = {"float32"}

    @property
    def num_key_value_heads(self) -> int:
        return self.huggingface_config.n_head  # plain multi-head attention

    @property
    def head_dim(self) -> int:
        return self.huggingface_config.n_embd // self.huggingface_config.n_head

    @property
    def num_layers(self) -> int:
        return self.huggingface_config.n_layer

    @classmethod
    def calculate_max_seq_len(cls, huggingface_config: Any, model_config: Any) -> int:
        # --max-length, bounded by the position table (n_positions); default n_positions.
        return upper_bounded_default(
            upper_bound=huggingface_config.n_positions, default=model_config.max_length
        )
# ANCHOR_END: config

    @classmethod
    def construct_kv_params(cls, huggingface_config, pipeline_config, devices,
                            kv_cache_config, cache_dtype):
        # MAX's text pipeline always allocates a paged KV cache of these sizes; the course's
        # model keeps its own cache (model.py) and does not read this one.
        return kv_cache_config.to_params(
            dtype=cache_dtype,
            n_kv_heads=huggingface_config.n_head,
            head_dim=huggingface_config.n_embd // huggingface_config.n_head,
            num_layers=huggingface_config.n_layer,
            devices=devices,
            data_parallel_degree=pipeline_config.model.data_parallel_degree,
        )
