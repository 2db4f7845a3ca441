"""The pipeline model: compiles the course's GPT-2 and runs it for MAX's text-generation pipeline.

MAX's ``TextGenerationPipeline`` accepts only a ``PipelineModelWithKVCache`` subclass and
builds a paged KV cache manager from ``kv_params`` whatever the model does with it. The
course's model does not read that paged cache (it would need MAX's paged-attention kernels
instead of the course's attention). Which model runs is written by the serve command in the
served folder's settings file (gpt2course/serve/folder.py), read here:

  "solutions"  step 13's ``MaxGPT2LMHeadModelWithCache`` with the course's own KV cache:
               per request the keys and values stay on the device between steps, keyed by
               request id; prefill runs the prompt, each decode step one token. The requests
               of a batch run one after another (they have different past lengths and the
               course's model has no padding mask). ``release(request_id)``, which the
               pipeline calls when a request ends, frees its cache.
  "steps"      the learner's ``MaxGPT2LMHeadModel`` (steps/step_11.py), which has no cache:
               the whole sequence (prompt + everything generated) every step, all requests
               of a batch in one call, right-padded (causal attention: padding after a row's
               last token cannot change that row's logits).

Tokens are chosen by MAX's own sampler from the logits ``execute`` returns (temperature,
top-k, top-p of each request), not by step 12's ``sample_next_token``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from max.driver import Buffer, Device
from max.dtype import DType
from max.engine import InferenceSession
from max.experimental import functional as F
from max.experimental.tensor import Tensor, default_device, default_dtype
from max.graph import TensorType
from max.graph.weights import Weights, WeightsAdapter
from max.nn.kv_cache import KVCacheInputs
from max.nn.transformer import ReturnHiddenStates, ReturnLogits
from max.pipelines.context import TextContext
from max.pipelines.lib import (
    KVCacheConfig,
    ModelInputs,
    ModelOutputs,
    PipelineConfig,
    PipelineModelWithKVCache,
)

from gpt2course.serve.folder import read_settings

from .model_config import GPT2ArchConfig

logger = logging.getLogger("max.pipelines")


def course_config(hf_config: Any):
    """The course's GPT2Config (step 01's solution) from the Hugging Face config."""
    from solutions.solution_01 import GPT2Config

    return GPT2Config(
        vocab_size=hf_config.vocab_size,
        n_positions=hf_config.n_positions,
        n_embd=hf_config.n_embd,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_inner=getattr(hf_config, "n_inner", None),
        layer_norm_epsilon=hf_config.layer_norm_epsilon,
    )


@dataclass
class GPT2Inputs(ModelInputs):
    """One step's requests: their ids and the token ids this step must see."""

    request_ids: list[Any] = field(default_factory=list)
    token_ids: list[np.ndarray] = field(default_factory=list)  # per request
    past_lengths: list[int] = field(default_factory=list)  # tokens already processed

    @property
    def buffers(self) -> tuple[Buffer, ...]:
        return ()


class GPT2PipelineModel(PipelineModelWithKVCache[TextContext]):
    model_config_cls = GPT2ArchConfig

    def __init__(
        self,
        pipeline_config: PipelineConfig,
        session: InferenceSession,
        devices: list[Device],
        kv_cache_config: KVCacheConfig,
        weights: Weights,
        adapter: WeightsAdapter | None,
        return_logits: ReturnLogits,
        *,
        memory_plan: Any,
        return_hidden_states: ReturnHiddenStates = ReturnHiddenStates.NONE,
        max_batch_size: int = 1,
    ) -> None:
        super().__init__(
            pipeline_config, session, devices, kv_cache_config, weights, adapter,
            return_logits, memory_plan=memory_plan,
            return_hidden_states=return_hidden_states, max_batch_size=max_batch_size,
        )
        settings = read_settings(pipeline_config.model.model_path)
        self.cached = settings["model"] == "solutions"
        self.target = settings["target"]
        self.weights_dtype = settings["dtype"]
        self.config = course_config(self.huggingface_config)
        self.device = devices[0]
        self._caches: dict[Any, tuple[list[Tensor], list[Tensor], int]] = {}
        self.model = self.load_model(session)

    # ANCHOR: compile
    def load_model(self, session: InferenceSession) -> Any:
        state = self._load_state_dict()  # through weight_adapters.convert_safetensor_state_dict
        weights = {k: np.array(np.from_dlpack(v)) for k, v in state.items()}
        cfg, dev = self.config, self.device
        if self.cached:  # the Linear weights stored as `make serve --dtype` says (run/precision.py)
            from gpt2course.run import precision

            weights = {k: precision.as_tensor(v) for k, v in precision.stored_weights(weights, self.weights_dtype).items()}
        t0 = time.perf_counter()
        with F.lazy(), default_device(dev), default_dtype(DType.float32):
            module = self._course_module(cfg)
        if self.cached:
            hd = cfg.n_embd // cfg.n_head
            cache_t = [TensorType(DType.float32, [1, cfg.n_head, "past", hd], device=dev)
                       for _ in range(cfg.n_layer)]
            ids_type = TensorType(DType.int64, [1, "seq"], device=dev)
            compiled = module.compile(ids_type, cache_t, list(cache_t), weights=weights)
        else:
            ids_type = TensorType(DType.int64, ["batch", "seq"], device=dev)
            compiled = module.compile(ids_type, weights=weights)
        logger.info("course GPT-2 (%s) compiled in %.1fs",
                    f"solutions, KV cache, {self.weights_dtype} weights" if self.cached else "steps, no cache",
                    time.perf_counter() - t0)
        return compiled
    # ANCHOR_END: compile

    def _course_module(self, cfg):
        if self.cached:
            from solutions.solution_13 import MaxGPT2LMHeadModelWithCache

            class LastTokenWithCache(MaxGPT2LMHeadModelWithCache):
                """Step 13's model, returning only the last position's logits [1, vocab]."""

                def forward(self, input_ids, past_keys, past_values):
                    h, keys, values = self.transformer(input_ids, past_keys, past_values)
                    return self.lm_head(h[:, -1, :]), keys, values

            from gpt2course.run.graphs import store_linear_weights

            return store_linear_weights(LastTokenWithCache(cfg), self.weights_dtype)
        # The learner's model; the serve command ran the gate (steps 10-12 pass) before.
        from gpt2course import course
        from gpt2course.check import learner

        cls = learner.export(learner.load(11, self.target), 11, "MaxGPT2LMHeadModel",
                             course.step_file(11, self.target))
        return cls(cfg)

    # ANCHOR: inputs
    def prepare_initial_token_inputs(
        self,
        replica_batches: Sequence[Sequence[TextContext]],
        kv_cache_inputs: KVCacheInputs[Buffer, Buffer] | None = None,
        return_n_logits: int = 1,
    ) -> GPT2Inputs:
        inputs = GPT2Inputs()
        for batch in replica_batches:
            for ctx in batch:
                t = ctx.tokens
                inputs.request_ids.append(ctx.request_id)
                inputs.past_lengths.append(t.processed_length)
                if self.cached:  # only what the cache has not seen: the prompt, then one token
                    inputs.token_ids.append(np.array(t.active, dtype=np.int64))
                else:            # everything so far
                    inputs.token_ids.append(np.array(t.all[: t.current_position], dtype=np.int64))
        inputs.kv_cache_inputs = kv_cache_inputs
        return inputs
    # ANCHOR_END: inputs

    # ANCHOR: execute
    def execute(self, model_inputs: ModelInputs) -> ModelOutputs:
        assert isinstance(model_inputs, GPT2Inputs)
        if self.cached:
            logits = self._execute_cached(model_inputs)
        else:
            logits = self._execute_replay(model_inputs)
        buf = Buffer.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(self.device)
        return ModelOutputs(logits=buf, next_token_logits=buf)  # [batch, vocab]

    def _execute_cached(self, inp: GPT2Inputs) -> np.ndarray:
        rows = []
        for rid, ids, past in zip(inp.request_ids, inp.token_ids, inp.past_lengths):
            entry = self._caches.get(rid)
            if entry is None or entry[2] != past:
                if past != 0:
                    raise RuntimeError(f"request {rid}: {past} tokens processed but the course "
                                       f"cache holds {None if entry is None else entry[2]}")
                keys, values = self._empty_cache()
            else:
                keys, values = entry[0], entry[1]
            ids_t = Tensor.from_dlpack(np.ascontiguousarray(ids[None, :])).to(self.device)
            logits, keys, values = self.model(ids_t, list(keys), list(values))
            self._caches[rid] = (list(keys), list(values), past + len(ids))
            rows.append(np.from_dlpack(logits)[0])
        return np.stack(rows)

    def release(self, request_id: Any) -> None:
        """Called by the pipeline when a request ends: drop its course-side cache."""
        self._caches.pop(request_id, None)
    # ANCHOR_END: execute

    def _empty_cache(self) -> tuple[list[Tensor], list[Tensor]]:
        cfg = self.config
        z = np.zeros((1, cfg.n_head, 0, cfg.n_embd // cfg.n_head), dtype=np.float32)
        return ([Tensor.from_dlpack(z.copy()).to(self.device) for _ in range(cfg.n_layer)],
                [Tensor.from_dlpack(z.copy()).to(self.device) for _ in range(cfg.n_layer)])

    def _execute_replay(self, inp: GPT2Inputs) -> np.ndarray:
        lengths = [len(ids) for ids in inp.token_ids]
        padded = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
        for row, ids in enumerate(inp.token_ids):
            padded[row, : len(ids)] = ids
        out = np.from_dlpack(self.model(Tensor.from_dlpack(padded).to(self.device)))
        return out[np.arange(len(lengths)), np.array(lengths) - 1, :]
