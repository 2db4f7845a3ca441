"""Registration: the SupportedArchitecture that tells MAX how to serve a "GPT2LMHeadModel" folder."""

from __future__ import annotations

from max.graph.weights import WeightsFormat
from max.pipelines.context import TextContext
from max.pipelines.lib import SupportedArchitecture, TextTokenizer
from max.pipelines.modeling.types import PipelineTask

from . import weight_adapters
from .model import GPT2PipelineModel
from .model_config import GPT2ArchConfig

# ANCHOR: registration
gpt2_course_arch = SupportedArchitecture(
    name="GPT2LMHeadModel",              # config.json "architectures"[0]
    task=PipelineTask.TEXT_GENERATION,
    example_repo_ids=["openai-community/gpt2"],
    default_encoding="float32",
    supported_encodings={"float32"},
    pipeline_model=GPT2PipelineModel,    # compiles and runs the course's model
    tokenizer=TextTokenizer,             # tokenizer.json from the served folder
    context_type=TextContext,
    default_weights_format=WeightsFormat.safetensors,
    weight_adapters={WeightsFormat.safetensors: weight_adapters.convert_safetensor_state_dict},
    config=GPT2ArchConfig,               # sizes for MAX's scheduler and memory planner
    multi_gpu_supported=False,
    required_arguments={"enable_prefix_caching": False},
    supports_overlap_scheduler=False,
    supports_device_graph_capture=False,
)
# ANCHOR_END: registration
