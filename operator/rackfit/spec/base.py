"""The spec's shared vocabulary: its literal types, the base model every block derives from, a cross-field rule, and
runtime releases as the *Version fields take them."""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "nf4", "mxfp4", "nvfp4"]
KVPrecision = Literal["fp32", "bf16", "fp16", "fp8"]
Method = Literal["full", "lora", "qlora"]
Optimizer = Literal["adamw", "adamw8bit", "sgd", "adafactor"]
MasterWeights = Literal["fp32", "none"]
Checkpointing = Literal["none", "selective", "full"]
LoraTarget = Literal["q", "k", "v", "o", "gate", "up", "down"]
LORA_TARGETS: tuple[str, ...] = get_args(LoraTarget)
Objective = Literal["fewestGPUs", "lowestCost"]
Engine = Literal["vllm", "sglang", "tensorrt-llm", "transformers"]
SpeculativeMethod = Literal["none", "draft", "eagle", "eagle3", "mtp", "ngram"]
TrtllmBackend = Literal["pytorch", "trt"]
Framework = Literal["transformers", "fsdp", "deepspeed", "megatron"]


class SpecModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )


Positive = Field(default=None, gt=0)


class Rule(NamedTuple):
    """A cross-field rule: pydantic's model validator raises `message`; the CRD carries `cel` with
    the same message (api/crdgen.py), so `kubectl apply` and the operator say the same thing."""

    cel: str
    message: str
    field: str = ""  # the field the error names, relative to the model (e.g. ".precision")


# A runtime release as the version fields take it: "0.8.5", "4.48" (the *Version fields; parse_release parses it)
RELEASE_PATTERN = r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"


@functools.cache
def parse_release(version: str) -> tuple[int, ...]:
    """ "0.8.5" -> (0, 8, 5), parsed once a string: an estimate asks a spec's release dozens of times."""
    return tuple(int(x) for x in version.split("."))


def older(version: str | None, release: tuple[int, ...]) -> bool:
    """A named release ("0.8.5", "4.48") older than `release`; unset means a current one."""
    return version is not None and parse_release(version) < release

