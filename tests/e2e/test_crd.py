"""The generated LLMWorkload CRD on a real kube-apiserver: the examples are accepted, `kubectl get`
shows the printer columns, bad objects are refused naming the field (OpenAPI checks and the CEL rules
that mirror the pydantic validators), and the status the CLI/operator write is stored unpruned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from devcluster.waiting import wait_established
from rackfit.api import conditions as c
from rackfit.api.status import LLMWorkloadStatus
from rackfit.cli import main as cli
from rackfit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
COLUMNS = ["NAME", "MODEL", "WORKLOAD", "INSTANCE", "NODES", "GPUS", "MEM/GPU", "MAX-CONC", "FITS", "PLACED", "AGE"]


@pytest.fixture(scope="module")
def crd(kubectl):
    """The CRD, applied idempotently (the apiserver is shared by the session) and Established."""
    applied = kubectl("apply", "--server-side", "-f", str(CRD))
    assert applied.returncode == 0, applied.stderr
    wait_established(kubectl, "llmworkloads.rackfit.io")


def _workload(name, spec) -> dict:
    return {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": name}, "spec": spec}


def _apply(kubectl, ns, docs):
    return kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))


def _examples() -> list[dict]:
    return [d for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == "LLMWorkload"]


def test_examples_are_accepted_and_listed_with_the_columns(crd, kubectl, namespace):
    docs = _examples()
    assert len(docs) >= 5
    out = _apply(kubectl, namespace, docs)
    assert out.returncode == 0, out.stderr
    listed = kubectl("get", "llmw", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == COLUMNS
    assert sorted(r.split()[0] for r in rows) == sorted(d["metadata"]["name"] for d in docs)
    # the category and the defaults the apiserver applies from the schema
    assert kubectl("get", "rackfit", "-n", namespace, "-o", "name").stdout.count("llmworkload") == len(docs)
    spec = json.loads(kubectl("get", "llmw", "-n", namespace, "-o", "json").stdout)["items"][0]["spec"]
    assert spec["placement"]["headroom"] == 0.1 and spec["placement"]["objective"] == "lowestCost"


GOOD = [
    ("parameters-string", {"model": {"parameters": "70B"}, "workload": "inference"}),
    ("parameters-int", {"model": {"parameters": 70_000_000_000}, "workload": "inference"}),
    ("null-training-on-inference", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "training": None}),
    ("lora-rank", {"model": {"preset": "qwen2.5-7b"}, "workload": "training",
                   "training": {"method": "lora", "loraRank": 8}}),
    ("defaults-full", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {}}),
    ("arch-override", {"model": {"preset": "llama-3.1-8b", "architecture": {"numLayers": 16}},
                       "workload": "inference"}),
    ("dp-attention", {"model": {"preset": "deepseek-v3"}, "workload": "inference", "parallelism": {"tensor": 8},
                      "inference": {"engine": "sglang", "engineVersion": "0.4.1", "dataParallelAttention": 8}}),
    ("use-cache", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                   "training": {"framework": "fsdp", "fsdpVersion": 1, "method": "lora",
                                "activationCheckpointing": "full", "transformersVersion": "4.31.0",
                                "useCache": True}}),
    ("fp32-serving", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "precision": "fp32",
                      "inference": {"kvCachePrecision": "fp32"}}),
    ("kbit-norms-cast-back", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                              "training": {"method": "qlora", "kbitNormsFp32": False}}),
    ("bf16-true-adapters", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                            "training": {"method": "lora", "masterWeights": "none", "adapterDtype": "16bit"}}),
    ("qlora-under-fp16", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                          "training": {"method": "qlora", "mixedPrecision": "fp16"}}),
    ("pre-wrap-optimizer", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                            "training": {"framework": "fsdp", "fsdpVersion": 1, "preWrapOptimizer": True}}),
    ("loop-keeps-output", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                           "training": {"framework": "fsdp", "fsdpVersion": 1, "activationCheckpointing": "full",
                                        "transformersVersion": "4.31.0", "useCache": True,
                                        "loopKeepsOutput": True}}),
    ("checkpoint-wrapper", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                            "training": {"framework": "fsdp", "fsdpVersion": 1, "method": "qlora",
                                         "activationCheckpointing": "full", "checkpointWrapper": True}}),
    ("liger-kernel", {"model": {"preset": "llama-3.2-1b"}, "workload": "training", "parallelism": {"data": 8},
                      "training": {"framework": "fsdp", "modelCode": "transformers", "ligerKernel": True}}),
    ("liger-kernel-hf-trainer", {"model": {"preset": "qwen2.5-7b"}, "workload": "training", "parallelism": {"data": 4},
                                 "training": {"framework": "deepspeed", "zeroStage": 3, "ligerKernel": True,
                                              "lossChunks": 32}}),
    ("dp-attention-split", {"model": {"preset": "deepseek-v3"}, "workload": "inference", "parallelism": {"tensor": 8},
                            "inference": {"engine": "sglang", "engineVersion": "0.5.2", "dataParallelAttention": 2}}),
    ("zero3-without-zero-init", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                 "parallelism": {"data": 2},
                                 "training": {"framework": "deepspeed", "zeroStage": 3, "zeroInit": False,
                                              "transformersVersion": "4.46.1", "deepspeedVersion": "0.15.4"}}),
    ("opt-16bit-loss-under-deepspeed", {"model": {"architecture": {"numLayers": 24, "hiddenSize": 2048,
                                                                   "intermediateSize": 8192, "numAttentionHeads": 32,
                                                                   "numKeyValueHeads": 32, "headDim": 64,
                                                                   "vocabSize": 50272, "gatedMlp": False,
                                                                   "modelType": "opt"}},
                                        "workload": "training", "precision": "fp16",
                                        "training": {"framework": "deepspeed", "zeroStage": 2,
                                                     "transformersVersion": "4.28.0", "loopKeepsOutput": True}}),
    ("vllm-v0-forced", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                        "inference": {"engineVersion": "0.8.5", "vllmUseV1": False}}),
    ("vllm-old-runner-forced", {"model": {"preset": "qwen2.5-7b"}, "workload": "inference",
                                "inference": {"engineVersion": "0.26.0", "v2ModelRunner": False}}),
    ("megatron-tp-comm-overlap", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                  "parallelism": {"tensor": 2},
                                  "training": {"framework": "megatron", "sequenceParallel": True,
                                               "tpCommOverlap": True, "transformerImpl": "transformer_engine",
                                               "mtpNumLayers": 1, "crossEntropyFusion": "native",
                                               "gradReduceInFp32": False}}),
    ("megatron-precision-aware-optimizer", {"model": {"preset": "qwen3-30b-a3b"}, "workload": "training",
                                           "parallelism": {"data": 8, "expert": 8},
                                           "training": {"framework": "megatron", "precisionAwareOptimizer": True,
                                                        "adamMomentsDtype": "bf16", "gradReduceInFp32": False}}),
    ("cublas-workspace-config", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                 "parallelism": {"data": 2},
                                 "training": {"framework": "fsdp", "cublasWorkspaceConfig": ":4096:2:16:8"}}),
    ("megatron-deferred-embedding-wgrad", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                           "parallelism": {"tensor": 2, "pipeline": 2},
                                           "training": {"framework": "megatron", "deferEmbeddingWgrad": True,
                                                        "wgradDeferralLimit": 2}}),
    ("torchtune-single-device-flags", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                       "parallelism": {"data": 1},
                                       "training": {"framework": "transformers", "optimizer": "adamw8bit",
                                                    "pagedOptimizer": True, "optimizerInBackward": True}}),
    ("flash-attention-varlen", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                "training": {"framework": "deepspeed", "flashAttentionVarlen": True}}),
    ("paged-adamw-32bit", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                           "training": {"framework": "transformers", "optimizer": "adamw", "pagedOptimizer": True}}),
    ("paged-adamw-32bit-fsdp1", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                 "parallelism": {"data": 8},
                                 "training": {"framework": "fsdp", "fsdpVersion": 1, "optimizer": "adamw",
                                              "pagedOptimizer": True}}),
    ("accelerate-fsdp2-release", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                  "parallelism": {"data": 8},
                                  "training": {"framework": "fsdp", "fsdpVersion": 2, "modelCode": "transformers",
                                               "gradientAccumulationSteps": 2, "accelerateVersion": "1.10.0"}}),
    ("accelerate-fsdp2-child-checkpoint", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                           "parallelism": {"data": 8},
                                           "training": {"framework": "fsdp", "fsdpVersion": 2,
                                                        "modelCode": "transformers", "activationCheckpointing": "full",
                                                        "fsdpActivationCheckpointing": True,
                                                        "accelerateVersion": "1.11.0"}}),
    ("torchtune-loss", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                        "training": {"framework": "fsdp", "lossChunks": 8, "torchtuneLoss": "chunkedOutput"}}),
    ("joint-graph", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                     "training": {"framework": "fsdp", "compile": True, "jointGraph": True}}),
    ("expert-tensor-parallel", {"model": {"preset": "mixtral-8x7b"}, "workload": "training",
                                "parallelism": {"tensor": 2, "data": 4, "expert": 4},
                                "training": {"framework": "megatron", "expertTensorParallel": 1}}),
    ("rope-scaling", {"model": {"preset": "qwen2.5-7b", "architecture": {
        "maxPositionEmbeddings": 32768, "modelType": "qwen2",
        "ropeScaling": {"type": "yarn", "factor": 4.0, "originalMaxPositionEmbeddings": 32768}}},
        "workload": "inference", "inference": {"contextLength": 131072}}),
    ("torchtune-version", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                           "training": {"framework": "fsdp", "method": "qlora", "loraTargets": ["q", "v"],
                                        "torchtuneVersion": "0.2.1"}}),
    ("online-fp8-quantization", {"model": {"preset": "qwen3-8b"}, "workload": "inference", "precision": "fp8",
                                 "inference": {"engine": "sglang", "onlineQuantization": True}}),
    ("vllm-capture-size", {"model": {"preset": "gpt-oss-120b-mxfp4"}, "workload": "inference", "precision": "mxfp4",
                           "inference": {"engineVersion": "0.24.0", "maxCudaGraphCaptureSize": 2048}}),
    ("foreach-adamw-torch-2-0", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                 "parallelism": {"data": 3},
                                 "training": {"framework": "transformers", "optimizer": "adamw",
                                              "adamwImplementation": "foreach", "torchVersion": "2.0.0"}}),
    # the bare decoder under a task head (transformers' AutoModel): no LM head
    ("bare-decoder-lora", {"model": {"preset": "llama-3.2-1b"}, "workload": "training", "precision": "fp32",
                           "training": {"framework": "transformers", "method": "lora", "masterWeights": "none",
                                        "lmHead": False}}),
    # a hybrid model's prefixCaching left unset (vLLM's default, on from 0.28.0) or set off explicitly
    ("hybrid-prefix-caching-default", {"model": {"preset": "qwen3-next-80b-a3b"}, "workload": "inference",
                                       "inference": {"engineVersion": "0.29.0"}}),
    ("hybrid-prefix-caching-off", {"model": {"preset": "qwen3-next-80b-a3b"}, "workload": "inference",
                                   "inference": {"engineVersion": "0.29.0", "prefixCaching": False}}),
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True exported for a transformers job (T1940)
    ("expandable-transformers", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                 "training": {"framework": "transformers", "optimizer": "adamw8bit",
                                              "pagedOptimizer": True, "activationCheckpointing": "full",
                                              "expandableSegments": True}}),
    # gpt-oss's clamped SwiGLU (config.json swiglu_limit) stated on an architecture
    ("swiglu-limit", {"model": {"preset": "gpt-oss-120b", "architecture": {"numLayers": 24, "numExperts": 32,
                                                                            "slidingWindowLayers": 12,
                                                                            "swigluLimit": 7.0}},
                      "workload": "training", "parallelism": {"data": 64},
                      "training": {"framework": "fsdp", "method": "full", "activationCheckpointing": "none",
                                   "microBatchSize": 4, "sequenceLength": 8192}}),
]


@pytest.mark.parametrize("name,spec", GOOD, ids=[g[0] for g in GOOD])
def test_valid_edge_cases_are_accepted(crd, kubectl, namespace, name, spec):
    out = _apply(kubectl, namespace, [_workload(name, spec)])
    assert out.returncode == 0, out.stderr


BAD = [
    ("enum", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "precision": "fp9"},
     ["spec.precision", "fp9", "bf16"]),
    ("training-missing", {"model": {"preset": "llama-3.1-8b"}, "workload": "training"},
     ["spec.training", "needs a `training` block"]),
    ("training-on-inference", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                               "training": {"method": "lora"}},
     ["spec.training", "only allowed with workload: training"]),
    ("inference-on-training", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {},
                               "inference": {"contextLength": 8192}},
     ["spec.inference", "only allowed with workload: inference"]),
    ("accelerate-version-not-fsdp2", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                      "training": {"framework": "transformers", "accelerateVersion": "1.10.0"}},
     ["spec.training.accelerateVersion", "only with framework fsdp, fsdpVersion 2 and modelCode transformers"]),
    ("fsdp-activation-checkpointing-no-ac", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                             "training": {"framework": "fsdp", "modelCode": "transformers",
                                                          "fsdpActivationCheckpointing": True}},
     ["spec.training.fsdpActivationCheckpointing", "modelCode transformers and activationCheckpointing full"]),
    ("lora-rank-full", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                        "training": {"method": "full", "loraRank": 8}},
     ["spec.training.loraRank", "only allowed with method lora or qlora"]),
    ("lora-rank-default-method", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                  "training": {"loraRank": 8}},
     ["spec.training.loraRank", "only allowed with method lora or qlora"]),
    ("qlora-bf16", {"model": {"preset": "llama-3.1-70b"}, "workload": "training", "training": {"method": "qlora"}},
     ["spec.precision", "qlora needs precision nf4"]),
    ("full-fp8", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "fp8",
                  "training": {"method": "full"}},
     ["spec.precision", "precision must be fp32, bf16 or fp16"]),
    ("parameters-with-preset", {"model": {"preset": "llama-3.1-8b", "parameters": "8B"}, "workload": "inference"},
     ["spec.model.parameters", "stands alone"]),
    ("preset-and-hf", {"model": {"preset": "llama-3.1-8b", "huggingFaceConfig": "cfg"}, "workload": "inference"},
     ["spec.model.huggingFaceConfig", "not both"]),
    ("no-model", {"model": {}, "workload": "inference"},
     ["spec.model", "give one of preset, architecture, huggingFaceConfig or parameters"]),
    ("parameters-zero", {"model": {"parameters": 0}, "workload": "inference"},
     ["spec.model.parameters", "greater than or equal to 1"]),
    ("parameters-text", {"model": {"parameters": "lots"}, "workload": "inference"}, ["spec.model.parameters"]),
    ("context-zero", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "inference": {"contextLength": 0}},
     ["spec.inference.contextLength", "greater than 0"]),
    ("headroom-one", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "placement": {"headroom": 1}},
     ["spec.placement.headroom", "less than 1"]),
    ("zero-stage", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {"zeroStage": 4}},
     ["spec.training.zeroStage", "less than or equal to 3"]),
    ("engine-version-tensorrt-llm", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                                     "inference": {"engine": "tensorrt-llm", "engineVersion": "1.2.1"}},
     ["spec.inference.engineVersion", "modelled for engines vllm and sglang only"]),
    ("engine-version-text", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                             "inference": {"engineVersion": "latest"}},
     ["spec.inference.engineVersion", "should match"]),
    ("dp-attention-vllm", {"model": {"preset": "deepseek-v3"}, "workload": "inference", "parallelism": {"tensor": 8},
                           "inference": {"dataParallelAttention": 8}},
     ["spec.inference.dataParallelAttention", "SGLang"]),
    ("dp-attention-before-0.4.5", {"model": {"preset": "deepseek-v3"}, "workload": "inference",
                                   "parallelism": {"tensor": 8},
                                   "inference": {"engine": "sglang", "engineVersion": "0.4.1",
                                                 "dataParallelAttention": 2}},
     ["spec.inference.dataParallelAttention", "0.4.5"]),
    ("use-cache-4.40", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                        "training": {"framework": "fsdp", "fsdpVersion": 1, "method": "lora",
                                     "activationCheckpointing": "full", "transformersVersion": "4.40.0",
                                     "useCache": True}},
     ["spec.training.useCache", "before 4.36"]),
    ("kv-cache-fp32-bf16-model", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                                  "inference": {"kvCachePrecision": "fp32"}},
     ["spec.inference.kvCachePrecision", "float32 model"]),
    ("kbit-norms-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                         "training": {"framework": "fsdp", "method": "qlora", "kbitNormsFp32": False}},
     ["spec.training.kbitNormsFp32", "only with framework transformers"]),
    ("adapter-dtype-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                            "training": {"framework": "fsdp", "method": "lora", "adapterDtype": "16bit"}},
     ["spec.training.adapterDtype", "only with framework transformers"]),
    ("mixed-precision-lora", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                              "training": {"method": "lora", "mixedPrecision": "fp16"}},
     ["spec.training.mixedPrecision", "only with framework transformers and method qlora"]),
    ("kbit-norms-bf16-lora", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                              "training": {"method": "lora", "kbitNormsFp32": False}},
     ["spec.training.kbitNormsFp32", "4- or 8-bit base"]),
    ("pre-wrap-optimizer-lora", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                 "training": {"framework": "fsdp", "fsdpVersion": 1, "method": "lora",
                                              "preWrapOptimizer": True}},
     ["spec.training.preWrapOptimizer", "fsdpVersion 1 and method full"]),
    ("loop-keeps-output-trainer", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                   "training": {"framework": "transformers", "loopKeepsOutput": True}},
     ["spec.training.loopKeepsOutput", "only with framework deepspeed or fsdp"]),
    ("checkpoint-wrapper-fsdp2", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                  "training": {"framework": "fsdp", "activationCheckpointing": "full",
                                               "checkpointWrapper": True}},
     ["spec.training.checkpointWrapper", "fsdpVersion 1 and activationCheckpointing full"]),
    ("liger-kernel-torchtitan", {"model": {"preset": "llama-3.2-1b"}, "workload": "training",
                                 "training": {"framework": "fsdp", "ligerKernel": True}},
     ["spec.training.ligerKernel", "only with framework transformers, deepspeed, or fsdp running transformers'"]),
    ("liger-kernel-megatron", {"model": {"preset": "llama-3.2-1b"}, "workload": "training",
                               "training": {"framework": "megatron", "ligerKernel": True}},
     ["spec.training.ligerKernel", "only with framework transformers, deepspeed, or fsdp running transformers'"]),
    ("expert-tensor-parallel-layout", {"model": {"preset": "mixtral-8x7b"}, "workload": "training",
                                       "parallelism": {"tensor": 2, "data": 4, "expert": 4},
                                       "training": {"framework": "megatron", "expertTensorParallel": 4}},
     ["spec.training.expertTensorParallel", "dividing parallelism.tensor x parallelism.data"]),
    ("expert-beyond-the-gpus", {"model": {"preset": "mixtral-8x7b"}, "workload": "inference",
                               "parallelism": {"tensor": 2, "expert": 8}},
     ["spec.parallelism.expert", "must divide parallelism.tensor x parallelism.data"]),
    ("megatron-expert-beyond-data", {"model": {"preset": "mixtral-8x7b"}, "workload": "training",
                                     "parallelism": {"tensor": 2, "data": 2, "expert": 4},
                                     "training": {"framework": "megatron"}},
     ["spec.parallelism.expert", "must divide parallelism.data"]),
    ("expert-tensor-parallel-no-layout", {"model": {"preset": "mixtral-8x7b"}, "workload": "training",
                                          "training": {"framework": "megatron", "expertTensorParallel": 1}},
     ["spec.training.expertTensorParallel", "needs parallelism set"]),
    ("distributed-optimizer-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                    "training": {"framework": "fsdp", "distributedOptimizer": False}},
     ["spec.training.distributedOptimizer", "only with framework megatron"]),
    ("grad-reduce-fp32-deepspeed", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                    "training": {"framework": "deepspeed", "gradReduceInFp32": True}},
     ["spec.training.gradReduceInFp32", "only with framework megatron"]),
    ("cublas-workspace-config-unparsed", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                          "training": {"framework": "fsdp", "cublasWorkspaceConfig": "4096:8"}},
     ["spec.training.cublasWorkspaceConfig", "should match"]),
    ("tp-comm-overlap-without-sp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                    "parallelism": {"tensor": 2},
                                    "training": {"framework": "megatron", "tpCommOverlap": True}},
     ["spec.training.tpCommOverlap", "needs training.sequenceParallel true"]),
    ("transformer-impl-local-flash", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                      "training": {"framework": "megatron", "transformerImpl": "local"}},
     ["spec.training.transformerImpl", "set training.flashAttention false"]),
    ("mtp-on-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                     "training": {"framework": "fsdp", "mtpNumLayers": 1}},
     ["spec.training.mtpNumLayers", "only with framework megatron"]),
    ("wgrad-deferral-limit-without-defer", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                            "parallelism": {"pipeline": 2},
                                            "training": {"framework": "megatron", "wgradDeferralLimit": 2}},
     ["spec.training.wgradDeferralLimit", "needs training.deferEmbeddingWgrad true"]),
    ("precision-aware-optimizer-without-distributed", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                                       "training": {"framework": "megatron",
                                                                    "distributedOptimizer": False,
                                                                    "precisionAwareOptimizer": True}},
     ["spec.training.precisionAwareOptimizer", "needs optimizer adamw, method full and the distributed optimizer"]),
    ("adam-moments-dtype-without-precision-aware", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                                    "training": {"framework": "megatron",
                                                                 "adamMomentsDtype": "bf16"}},
     ["spec.training.adamMomentsDtype", "needs training.precisionAwareOptimizer true"]),
    ("defer-embedding-wgrad-on-deepspeed", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                            "training": {"framework": "deepspeed", "deferEmbeddingWgrad": True}},
     ["spec.training.deferEmbeddingWgrad", "only with framework megatron"]),
    ("flash-attention-varlen-on-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                        "training": {"framework": "fsdp", "flashAttentionVarlen": True}},
     ["spec.training.flashAttentionVarlen", "framework transformers or deepspeed"]),
    ("flash-attention-varlen-without-flash", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                              "training": {"framework": "transformers", "flashAttention": False,
                                                           "flashAttentionVarlen": True}},
     ["spec.training.flashAttentionVarlen", "flashAttention not false"]),
    ("torchtune-loss-without-chunks", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                       "training": {"framework": "transformers", "torchtuneLoss": "linear"}},
     ["spec.training.torchtuneLoss", "only with lossChunks above 1"]),
    ("torchtune-loss-chunk-backward", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                       "training": {"framework": "fsdp", "lossChunks": 8, "lossChunkBackward": True,
                                                    "torchtuneLoss": "chunkedOutput"}},
     ["spec.training.torchtuneLoss", "no lossChunkBackward"]),
    ("cross-entropy-fusion-on-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                      "training": {"framework": "fsdp", "crossEntropyFusion": "native"}},
     ["spec.training.crossEntropyFusion", "only with framework megatron"]),
    ("deepspeed-version-on-fsdp", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                   "training": {"framework": "fsdp", "deepspeedVersion": "0.9.0"}},
     ["spec.training.deepspeedVersion", "only with framework deepspeed"]),
    ("torchao-version-full", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                              "training": {"framework": "fsdp", "torchaoVersion": "0.1"}},
     ["spec.training.torchaoVersion", "only with"]),
    ("torchtune-version-full", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                "training": {"framework": "fsdp", "torchtuneVersion": "0.2.1"}},
     ["spec.training.torchtuneVersion", "only with"]),
    ("joint-graph-without-compile", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                                     "training": {"framework": "fsdp", "jointGraph": True}},
     ["spec.training.jointGraph", "compile true"]),
    ("optimizer-in-backward-without-layout", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                              "training": {"framework": "transformers", "optimizerInBackward": True}},
     ["spec.training.optimizerInBackward", "only on one GPU"]),
    ("optimizer-in-backward-lora", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                    "parallelism": {"data": 1},
                                    "training": {"framework": "transformers", "method": "lora",
                                                 "optimizerInBackward": True}},
     ["spec.training.optimizerInBackward", "method full"]),
    ("paged-optimizer-torch-adamw", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                     "training": {"framework": "transformers", "optimizer": "adamw",
                                                  "adamwImplementation": "fused", "pagedOptimizer": True}},
     ["spec.training.pagedOptimizer", "adamw without adamwImplementation"]),
    ("own-16bit-loss-qlora", {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "precision": "nf4",
                              "training": {"framework": "transformers", "method": "qlora", "lossUpcast": False}},
     ["spec.training.lossUpcast", "method full or lora"]),
    ("hybridep-on-deepspeed", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                               "training": {"framework": "deepspeed", "hybridepCapacityFactor": 1.0}},
     ["spec.training.hybridepCapacityFactor", "only with framework fsdp"]),
    ("zero-init-zero2", {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
                         "training": {"framework": "deepspeed", "zeroStage": 2, "zeroInit": False}},
     ["spec.training.zeroInit", "zeroStage 3"]),
    ("vllm-v0-without-release", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                                 "inference": {"vllmUseV1": False}},
     ["spec.inference.vllmUseV1", "0.11.0 removed"]),
    ("vllm-v0-on-0-19", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                         "inference": {"engineVersion": "0.19.1", "vllmUseV1": False}},
     ["spec.inference.vllmUseV1", "0.11.0 removed"]),
    ("vllm-old-runner-on-0-34", {"model": {"preset": "qwen2.5-7b"}, "workload": "inference",
                                 "inference": {"engineVersion": "0.34.0", "v2ModelRunner": False}},
     ["spec.inference.v2ModelRunner", "0.34.0 removed"]),
    ("vllm-new-runner-on-0-21", {"model": {"preset": "qwen2.5-7b"}, "workload": "inference",
                                 "inference": {"engineVersion": "0.21.0", "v2ModelRunner": True}},
     ["spec.inference.v2ModelRunner", "before vLLM 0.22.0"]),
    ("vllm-use-v1-on-sglang", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                               "inference": {"engine": "sglang", "vllmUseV1": True}},
     ["spec.inference.vllmUseV1", "only with engine vllm"]),
    ("unknown-field", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "contextLength": 4096},
     ["contextLength", "unknown field"]),
    ("no-workload", {"model": {"preset": "llama-3.1-8b"}}, ["spec.workload", "Required value"]),
    ("online-quantization-vllm", {"model": {"preset": "qwen3-8b"}, "workload": "inference", "precision": "fp8",
                                  "inference": {"engine": "vllm", "onlineQuantization": True}},
     ["spec.inference.onlineQuantization", "only with engine sglang"]),
    ("online-quantization-bf16", {"model": {"preset": "qwen3-8b"}, "workload": "inference",
                                  "inference": {"engine": "sglang", "onlineQuantization": True}},
     ["spec.inference.onlineQuantization", "only with precision fp8"]),
    ("online-quantization-not-boolean", {"model": {"preset": "qwen3-8b"}, "workload": "inference",
                                         "precision": "fp8", "inference": {"engine": "sglang",
                                                                           "onlineQuantization": "fp8"}},
     ["spec.inference.onlineQuantization", "boolean"]),
    ("capture-size-on-sglang", {"model": {"preset": "qwen3-8b"}, "workload": "inference",
                                "inference": {"engine": "sglang", "maxCudaGraphCaptureSize": 256}},
     ["spec.inference.maxCudaGraphCaptureSize", "only with engine vllm"]),
    ("torch-version-on-deepspeed", {"model": {"preset": "llama-3.2-3b"}, "workload": "training",
                                    "training": {"framework": "deepspeed", "zeroStage": 3, "torchVersion": "2.0.0"}},
     ["spec.training.torchVersion", "foreach AdamW's step before 2.1"]),
    ("lm-head-on-fsdp", {"model": {"preset": "llama-3.2-1b"}, "workload": "training",
                         "training": {"framework": "fsdp", "method": "full", "lmHead": False}},
     ["spec.training.lmHead", "only with framework transformers"]),
    ("swiglu-limit-zero", {"model": {"preset": "gpt-oss-120b", "architecture": {"swigluLimit": 0}},
                           "workload": "inference"},
     ["spec.model.architecture.swigluLimit", "0"]),
]


@pytest.mark.parametrize("name,spec,expected", BAD, ids=[b[0] for b in BAD])
def test_invalid_objects_are_refused_naming_the_field(crd, kubectl, namespace, name, spec, expected):
    out = _apply(kubectl, namespace, [_workload(name, spec)])
    assert out.returncode != 0, f"{name} was accepted"
    for text in expected:
        assert text in out.stderr, out.stderr


@pytest.mark.parametrize("example", ["llama-405b-bf16-serving", "llama-70b-qlora"])
def test_status_from_the_cli_is_stored_unpruned(crd, kubectl, namespace, capsys, example):
    path = ROOT / "examples" / f"{example}.yaml"
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "LLMWorkload")
    name = doc["metadata"]["name"]
    assert _apply(kubectl, namespace, [doc]).returncode == 0
    assert cli(["plan", "-f", str(path), "-o", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["fits"] and planned["alternatives"], planned
    conds: list = []
    for type_, reason in ((c.ESTIMATED, c.ESTIMATE_READY), (c.FITS, c.FITS_INSTANCE_TYPE),
                          (c.PLACED, c.CAPACITY_FOUND)):
        conds = c.set_condition(conds, type_, True, reason, f"{type_} by test_crd", 1)
    conds = c.set_condition(conds, c.OVERSUBSCRIBED, False, c.WITHIN_CAPACITY, "", 1)
    model = parse_spec(doc).model.label  # what the MODEL column shows
    status = {"observedGeneration": 1, "model": model, "estimate": planned["estimate"],
              "memoryPerGPU": planned["memoryPerGPU"],
              "placement": planned["placement"],
              "alternatives": planned["alternatives"][:3], "conditions": conds}
    LLMWorkloadStatus.model_validate(status)
    out = kubectl("patch", "llmw", name, "-n", namespace, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": status}))
    assert out.returncode == 0, out.stderr
    stored = json.loads(kubectl("get", "llmw", name, "-n", namespace, "-o", "json").stdout)
    assert stored["status"] == status  # nothing pruned, nothing defaulted

    row = kubectl("get", "llmw", name, "-n", namespace, "--no-headers").stdout.split()
    p = status["placement"]
    conc = status["estimate"].get("maxConcurrency")  # serving engines only; kubectl leaves the cell blank
    assert row == [name, model, doc["spec"]["workload"], p["instanceType"], str(p["nodes"]), str(p["totalGPUs"]),
                   *status["memoryPerGPU"].split(), *([] if conc is None else [f"{conc:g}"]), "True", "True",
                   row[-1]], row


def test_status_refuses_what_the_schema_does_not_describe(crd, kubectl, namespace):
    assert _apply(kubectl, namespace, [_workload("s", {"model": {"preset": "llama-3.1-8b"},
                                                       "workload": "inference"})]).returncode == 0
    bad = {"status": {"conditions": [{"type": "Fits", "status": "Maybe", "reason": "x y",
                                      "lastTransitionTime": c.now()}]}}
    out = kubectl("patch", "llmw", "s", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(bad))
    assert out.returncode != 0
    assert "status.conditions[0].status" in out.stderr and "status.conditions[0].reason" in out.stderr, out.stderr
