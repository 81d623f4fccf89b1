"""LLMWorkload `spec` (rackfit.io/v1alpha1): the single source of truth for the CRD schema.

Pydantic models with camelCase aliases. `parse_spec()` turns any document the CLI or the
operator receives (a whole manifest or a bare spec) into a validated `LLMWorkloadSpec`, or raises
`InvalidWorkload` naming every bad field and what is allowed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from rackfit.errors import InvalidWorkload
from rackfit.names import KIND
from rackfit.spec.base import (
    LORA_TARGETS,
    Checkpointing,
    Engine,
    Framework,
    KVPrecision,
    Method,
    Objective,
    Precision,
    Rule,
    SpecModel,
)
from rackfit.spec.inference import Inference, replica_share
from rackfit.spec.model_source import Architecture, ModelSource
from rackfit.spec.releases import SGLANG_DP_ATTENTION_SIZE
from rackfit.spec.rules import FIELD_OF, RULES
from rackfit.spec.training import Training

__all__ = [
    "LORA_TARGETS", "RULES", "Architecture", "Checkpointing", "Engine", "Framework", "Inference", "InvalidWorkload",
    "KVPrecision", "LLMWorkloadSpec", "Method", "ModelSource", "Parallelism", "Placement", "Precision", "Rule",
    "Target", "Training", "parse_spec", "replica_share", "validation_errors",
]


class Parallelism(SpecModel):
    tensor: int = Field(1, gt=0)
    pipeline: int = Field(1, gt=0)
    data: int = Field(1, gt=0)
    expert: int = Field(1, gt=0, description=(
        "expert-parallel degree of a MoE model: its routed experts are spread over this many of the tensor x data "
        "GPUs (vLLM's --enable-expert-parallel uses all of them, tensor x data). It adds no GPU, so it must divide "
        "tensor x data; with framework megatron, data (expert tensor parallel defaults to tensor)"))

    @property
    def total_gpus(self) -> int:
        # expert parallelism reuses the data-parallel (or tensor) GPUs, as in Megatron and vLLM
        return self.tensor * self.pipeline * self.data


class Placement(SpecModel):
    instance_types: list[str] | None = Field(None, description="allowed types; default the whole catalog")
    max_nodes: int | None = Field(None, gt=0)
    headroom: float = Field(0.1, ge=0, lt=1, description="fraction of each GPU's memory left free")
    objective: Objective = Field("lowestCost", description=(
        "lowestCost: cheapest for the whole job by the catalog's pricePerHour; without prices, the least GPU "
        "memory reserved, older generations first (small jobs to small GPUs); fewestGPUs: fewest GPUs, then nodes"))
    use_host_memory: bool = Field(False, description="count GH200's CPU-attached memory as capacity")


class Target(SpecModel):
    kind: Literal["Deployment", "StatefulSet", "Job", "LeaderWorkerSet", "JobSet"] = Field(description=(
        "Deployment or StatefulSet: pods that each hold a whole model replica (one node); LeaderWorkerSet "
        "(leaderworkerset.x-k8s.io/v1): multi-node serving, one group of nodes; JobSet (jobset.x-k8s.io/v1alpha2) "
        "or Job, created suspended: training"))
    name: str = Field(min_length=1)


class LLMWorkloadSpec(SpecModel):
    model: ModelSource
    workload: Literal["inference", "training"]
    precision: Precision = "bf16"
    inference: Inference | None = None
    training: Training | None = None
    parallelism: Parallelism | None = None
    placement: Placement = Placement()
    target: Target | None = Field(None, description="the Deployment, StatefulSet, Job, LeaderWorkerSet or "
                                   "JobSet the operator patches")

    @model_validator(mode="after")
    def _cross_field(self) -> LLMWorkloadSpec:
        rules = RULES["LLMWorkloadSpec"]
        if self.parallelism is not None and (self.parallelism.tensor * self.parallelism.data) % self.parallelism.expert:
            raise ValueError(rules["expert_layout"].message)
        if self.workload == "inference":
            if self.training is not None:
                raise ValueError(rules["training_block"].message)
            if self.inference is None:
                object.__setattr__(self, "inference", Inference())
            if self.precision == "fp32" and "kv_cache_precision" not in self.inference.model_fields_set:
                object.__setattr__(self.inference, "kv_cache_precision", "fp32")  # the engines' `auto` KV dtype
            if self.inference.kv_cache_precision == "fp32" and self.precision != "fp32":
                raise ValueError(rules["kv_cache_fp32"].message)
            if self.inference.online_quantization and self.precision != "fp8":
                raise ValueError(rules["online_quantization_fp8"].message)
            dp = self.inference.data_parallel_attention
            par = self.parallelism
            if dp is not None and (par is None or par.tensor % dp or par.data != 1):
                raise ValueError(rules["data_parallel_attention_tensor"].message)
            if dp is not None and self.inference.sglang_before(SGLANG_DP_ATTENTION_SIZE) and par.tensor != dp:
                raise ValueError(rules["data_parallel_attention_size"].message)
        else:
            if self.inference is not None:
                raise ValueError(rules["inference_block"].message)
            if self.training is None:
                raise ValueError(rules["training_needed"].message)
            t = self.training
            if t.method == "qlora" and self.precision not in ("nf4", "int4"):
                raise ValueError(rules["qlora_precision"].message)
            if t.method == "full" and self.precision not in ("fp32", "bf16", "fp16"):
                raise ValueError(rules["full_precision"].message)
            if t.kbit_norms_fp32 is not None and t.method != "qlora" and self.precision != "int8":
                raise ValueError(rules["kbit_norms_base"].message)
            if not t.runs_pipeline_stages and self.parallelism and self.parallelism.pipeline > 1:
                raise ValueError(rules["deepspeed_pipeline_zero"].message)
            par = self.parallelism
            if t.optimizer_in_backward and (par is None or par.data * par.tensor * par.pipeline != 1):
                raise ValueError(rules["optimizer_in_backward_layout"].message)
            if (t.framework == "megatron" and t.expert_tensor_parallel is None and par is not None
                    and par.data % par.expert):
                raise ValueError(rules["megatron_expert_layout"].message)
            if t.expert_tensor_parallel is not None and (
                    par is None or (par.tensor * par.data) % (t.expert_tensor_parallel * par.expert)):
                raise ValueError(rules["expert_tensor_parallel_layout"].message)
        return self


def _path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    return ".".join(["spec", *parts]) if parts else "spec"


def validation_errors(e: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        field = FIELD_OF.get(msg, "")  # a cross-field rule names its field, as its CEL rule's fieldPath does
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error":
            msg = f"got {err.get('input')!r}; allowed: {err['ctx']['expected']}"
        out.append((_path(err["loc"]) + field, msg))
    return out


def parse_spec(doc: dict[str, Any]) -> LLMWorkloadSpec:
    """A manifest (`kind: LLMWorkload`) or a bare spec -> LLMWorkloadSpec; InvalidWorkload otherwise."""
    if not isinstance(doc, dict):
        raise InvalidWorkload([("", "expected a mapping: an LLMWorkload manifest or its spec")])
    if "kind" in doc or "apiVersion" in doc:
        if doc.get("kind") != KIND:
            raise InvalidWorkload([("kind", f"got {doc.get('kind')!r}; expected {KIND}")])
        doc = doc.get("spec")
        if not isinstance(doc, dict):
            raise InvalidWorkload([("spec", "missing; an LLMWorkload needs a spec")])
    try:
        return LLMWorkloadSpec.model_validate(doc)
    except ValidationError as e:
        raise InvalidWorkload(validation_errors(e)) from None
