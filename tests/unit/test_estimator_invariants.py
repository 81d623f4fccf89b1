"""Property tests (hypothesis) of the estimator's invariants across presets (dense, MoE, MLA, hybrid
linear-attention, vision), precisions, serving engines and releases, and training frameworks and methods.

Each property holds where the runtime's mechanism says so; where the estimator models a runtime behaviour that
breaks the naive invariant, the property is restricted and the comment cites the mechanism. Draws are derandomized
(fixed examples in CI) and few, so the file runs in `make unit`.
"""

from __future__ import annotations

import math
import os
from functools import cache

import pytest
from gpus import H100
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rackfit.catalog import load_catalog
from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.names import INSTANCE_TYPE_LABEL
from rackfit.planner import place, plan
from rackfit.planner.inventory import Inventory
from rackfit.spec import parse_spec

# RACKFIT_PROPERTY_EXAMPLES raises the draws for a local search (the fixed 25 keep `make unit` fast)
FAST = settings(max_examples=int(os.environ.get("RACKFIT_PROPERTY_EXAMPLES", 25)), derandomize=True, deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# dense, dense with sliding windows, MoE, MLA (+MoE), hybrid linear attention (+vision, nvfp4 checkpoint), vision
SERVING_PRESETS = ["llama-3.2-1b", "llama-3.1-8b", "gemma-2-27b", "qwen3-30b-a3b", "deepseek-v3",
                   "qwen3-next-80b-a3b", "qwen3.6-35b-a3b-nvfp4", "llama-4-scout"]
TRAINING_PRESETS = ["llama-3.2-1b", "llama-3.1-8b", "gemma-2-27b", "qwen3-30b-a3b", "qwen3-next-80b-a3b"]
# (engine, engineVersion): vLLM's V0 releases, V1, and the latest; SGLang's; TensorRT-LLM; transformers
ENGINES = [("vllm", None), ("vllm", "0.5.4"), ("vllm", "0.7.3"), ("vllm", "0.9.2"), ("vllm", "0.11.0"),
           ("vllm", "0.19.0"), ("sglang", None), ("sglang", "0.4.3"), ("tensorrt-llm", None), ("transformers", None)]
SERVING_ENGINES = [e for e in ENGINES if e[0] != "transformers"]
PRECISIONS = ["bf16", "fp8", "int4"]
FRAMEWORKS = [dict(framework="transformers"), dict(framework="transformers", zeroStage=3),
              dict(framework="fsdp"), dict(framework="fsdp", fsdpVersion=1),
              dict(framework="deepspeed", zeroStage=2), dict(framework="deepspeed", zeroStage=3),
              dict(framework="megatron")]


def _freeze(d: dict) -> tuple:
    return tuple(sorted((k, _freeze(v) if isinstance(v, dict) else v) for k, v in d.items()))


@cache
def _estimate(doc: tuple, gpu: bool):
    def thaw(t):
        return {k: thaw(v) if isinstance(v, tuple) and v and isinstance(v[0], tuple) else v for k, v in t}
    try:
        return estimate(parse_spec(thaw(doc)), gpu=H100 if gpu else None)
    except InvalidWorkload:
        return None


def serve(preset, precision, engine, version, ctx=4096, conc=1, tp=1, gmu=None, gpu=False, kv="bf16"):
    inf = dict(engine=engine, contextLength=ctx, concurrency=conc, kvCachePrecision=kv)
    if version:
        inf["engineVersion"] = version
    if gmu is not None:
        inf["gpuMemoryUtilization"] = gmu
    doc = dict(model=dict(preset=preset), workload="inference", precision=precision, inference=inf,
               parallelism=dict(tensor=tp))
    return _estimate(_freeze(doc), gpu)


def train(preset, fw, data=1, precision="bf16", **training):
    """`data`: the data-parallel degree, or a whole parallelism (a dict)."""
    doc = dict(model=dict(preset=preset), workload="training", precision=precision, training={**fw, **training},
               parallelism=data if isinstance(data, dict) else dict(data=data))
    return _estimate(_freeze(doc), False)


def tp_for(preset: str) -> int:
    return 8 if preset in ("deepseek-v3", "llama-4-scout") else 1


def _states(e) -> int:
    b = e.breakdown
    return b.weights_bytes + b.gradients_bytes + b.optimizer_states_bytes


def assert_well_formed(e) -> None:
    """Every breakdown field a finite, non-negative integer of bytes; the parts add up to total_bytes
    (result.Breakdown.total, as `estimate` sets Estimate.total_bytes)."""
    b = e.breakdown
    for name, v in b.model_dump().items():
        assert isinstance(v, int) and not isinstance(v, bool), (name, v)
        assert v >= 0 and math.isfinite(v), (name, v)
    assert e.total_bytes == b.total == sum(b.model_dump().values())
    for v in (e.engine_budget_bytes, e.kv_cache_tokens, e.kv_cache_pool_bytes):
        assert v is None or (isinstance(v, int) and v >= 0)
    assert e.max_concurrency is None or (math.isfinite(e.max_concurrency) and e.max_concurrency >= 0)


# ---------------------------------------------------------------- serving

@FAST
@given(st.sampled_from(SERVING_PRESETS), st.sampled_from(PRECISIONS), st.sampled_from(ENGINES),
       st.sampled_from([1024, 4096, 8192]), st.sampled_from([2, 4, 8]), st.sampled_from([1, 4, 16]),
       st.sampled_from([1, 2, 8]), st.booleans(), st.sampled_from(["bf16", "fp8"]))
def test_serving_longer_context_and_more_sequences_never_need_less(preset, precision, engine, ctx, factor, conc,
                                                                     growth, gpu, kv):
    base = serve(preset, precision, *engine, ctx=ctx, conc=conc, tp=tp_for(preset), gpu=gpu, kv=kv)
    assume(base is not None)
    assert_well_formed(base)
    longer = serve(preset, precision, *engine, ctx=ctx * factor, conc=conc, tp=tp_for(preset), gpu=gpu, kv=kv)
    more = serve(preset, precision, *engine, ctx=ctx, conc=conc * growth, tp=tp_for(preset), gpu=gpu, kv=kv)
    for e in (longer, more):
        if e is None:  # beyond the model's maxPositionEmbeddings: refused (estimator.check_context)
            continue
        assert_well_formed(e)
        assert e.total_bytes >= base.total_bytes
        assert e.breakdown.kv_cache_bytes >= base.breakdown.kv_cache_bytes
        if e.max_concurrency is not None:
            # the same engine budget on the same GPU holds no more of the larger requests
            assert e.max_concurrency <= base.max_concurrency


@FAST
@given(st.sampled_from(SERVING_PRESETS), st.sampled_from(PRECISIONS), st.sampled_from(ENGINES))
def test_more_tensor_parallelism_never_increases_weights_per_gpu(preset, precision, engine):
    weights = [e.breakdown.weights_bytes for tp in (1, 2, 4, 8)
               if (e := serve(preset, precision, *engine, tp=tp)) is not None]
    assert weights == sorted(weights, reverse=True)


@FAST
@given(st.sampled_from(SERVING_PRESETS), st.sampled_from(PRECISIONS), st.sampled_from(SERVING_ENGINES),
       st.sampled_from([4096, 32768]))
def test_higher_gpu_memory_utilization_never_lowers_kv_tokens(preset, precision, engine, ctx):
    tokens = []
    for gmu in (0.7, 0.8, 0.9, 0.95):
        e = serve(preset, precision, *engine, ctx=ctx, tp=8, gmu=gmu, gpu=True)
        assume(e is not None)
        assert_well_formed(e)
        tokens.append(e.kv_cache_tokens or 0)
    assert tokens == sorted(tokens)


# ---------------------------------------------------------------- training

def _method(draw_method: str) -> dict:
    return dict(method=draw_method, precision="nf4" if draw_method == "qlora" else "bf16")


LAYOUTS = [dict(data=1), dict(data=2), dict(data=4), dict(data=2, tensor=2), dict(data=1, tensor=4),
           dict(data=2, pipeline=2)]


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from(FRAMEWORKS), st.sampled_from(["full", "lora", "qlora"]),
       st.sampled_from(LAYOUTS), st.sampled_from(["none", "selective", "full"]),
       st.sampled_from(["adamw", "sgd", "adamw8bit"]))
def test_larger_micro_batch_or_sequence_never_needs_less(preset, fw, method, layout, ckpt, optimizer):
    """The allocated bytes (total less overhead: the CUDA context, NCCL and the allocator's slack) never shrink. The
    total may, where the smaller step peaks at the optimizer step and its temporaries took new segments that the larger
    backward's freed blocks serve (estimator/__init__.py _step_segments: c10's CUDACachingAllocator `malloc` reuses the
    smallest cached block at least as large), e.g. llama-3.1-8b FSDP2, data 2 x tensor 2, full checkpointing, SGD:
    b1 32.3 GiB (optimizer step, 9.8 GiB overhead), b2 30.5 GiB (loss backward, 5.2 GiB)."""
    m = _method(method)
    base = train(preset, fw, layout, activationCheckpointing=ckpt, optimizer=optimizer, **m)
    assume(base is not None)
    assert_well_formed(base)
    for bigger in (dict(microBatchSize=2), dict(sequenceLength=8192)):
        e = train(preset, fw, layout, activationCheckpointing=ckpt, optimizer=optimizer, **m, **bigger)
        if e is None:
            continue
        assert_well_formed(e)
        assert e.total_bytes - e.breakdown.overhead_bytes >= base.total_bytes - base.breakdown.overhead_bytes, bigger
        if e.total_bytes < base.total_bytes:
            assert base.peak_phase == "optimizer step" != e.peak_phase, bigger
            assert e.breakdown.overhead_bytes < base.breakdown.overhead_bytes, bigger


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from(FRAMEWORKS), st.sampled_from(["full", "lora", "qlora"]),
       st.sampled_from(LAYOUTS), st.sampled_from([1, 4]), st.sampled_from(["adamw", "sgd"]))
def test_activation_checkpointing_full_selective_none(preset, fw, method, data, mbs, optimizer):
    """The activations held at the peak: full <= selective <= none. The total is not ordered so: the estimator
    strands SLACK_RECOMPUTE (0.28) rather than SLACK_TRAINING (0.07) of the backward's blocks in the caching
    allocator where whole layers are recomputed (estimator/__init__.py, measured on the H200 rows with
    checkpointing, applied by _training to the live activations and DDP's param.grad, by _runtime to FSDP's,
    DeepSpeed's and Megatron's backward_transient): e.g. llama-3.2-1b FSDP2 full fine-tune, data 2, b1 s4096:
    none 23.85, selective 20.05, full 21.69 GiB."""
    m = _method(method)
    es = {c: train(preset, fw, data, activationCheckpointing=c, microBatchSize=mbs, optimizer=optimizer, **m)
          for c in ("none", "selective", "full")}
    assume(all(e is not None for e in es.values()))
    act = {c: e.breakdown.activations_bytes for c, e in es.items()}
    # at an optimizer-step peak no activation is live: the ordering is of the backward's peaks
    if all(e.peak_phase not in ("optimizer step", "load") for e in es.values()):
        assert act["full"] <= act["selective"] <= act["none"], act
    # allocated bytes (total less the allocator's slack and the fixed context/NCCL in overhead) are ordered
    alloc = {c: e.total_bytes - e.breakdown.overhead_bytes for c, e in es.items()}
    assert alloc["full"] <= alloc["selective"] <= alloc["none"], alloc


def test_ddp_backward_end_counts_layer_zero_in_every_checkpointing_mode():
    """Found by the property above (qwen3-30b-a3b, transformers, data 2, b1 s4096): at DDP's `backward end` the
    estimator counted layer 0's recompute under full checkpointing but nothing without it (and only the recomputed
    attention under selective), so `selective` and `full` allocated more than `none`. Layer 0's saved activations
    are live while its backward makes its param.grad: one layer's activations in every mode."""
    es = {c: train("qwen3-30b-a3b", dict(framework="transformers"), 2, activationCheckpointing=c)
          for c in ("none", "selective", "full")}
    assert {e.peak_phase for e in es.values()} == {"backward end"}
    # one layer's activations (activations._layer_bytes_per_token x 4096 tokens): what full checkpointing
    # recomputes, now held by all three
    full_layer = es["full"].breakdown.activations_bytes
    assert full_layer > 0
    assert es["none"].breakdown.activations_bytes == es["selective"].breakdown.activations_bytes == \
        pytest.approx(full_layer, rel=1e-6)
    # beside the buckets and every param.grad (bf16 masters in fp32: 4 bytes each, twice), as before
    p = es["none"].parameters
    assert es["none"].breakdown.gradients_bytes == pytest.approx(2 * 4 * p, rel=1e-6)


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from([f for f in FRAMEWORKS if f["framework"] != "megatron"]),
       st.sampled_from(LAYOUTS), st.sampled_from(["none", "full"]), st.sampled_from([1, 4]))
def test_lora_needs_no_more_than_full_and_qlora_weights_below_lora(preset, fw, data, ckpt, mbs):
    # megatron trains every weight: method must be full (spec rule)
    full = train(preset, fw, data, activationCheckpointing=ckpt, microBatchSize=mbs)
    lora = train(preset, fw, data, activationCheckpointing=ckpt, microBatchSize=mbs, method="lora")
    qlora = train(preset, fw, data, activationCheckpointing=ckpt, microBatchSize=mbs, method="qlora",
                  precision="nf4")
    assume(full is not None and lora is not None)
    # the trained states: LoRA's frozen base, adapters' gradients and optimizer states against every weight's
    assert _states(lora) <= _states(full)
    # The peak: not where LoRA's activations exceed the full fine-tune's. peft's LoRA Linear casts each adapted
    # projection's input to the adapters' fp32 dtype (peft/tuners/lora/layer.py, `_cast_input_dtype(x,
    # lora_A.weight.dtype)`) and lora_A saves it for its weight gradient (activations._layer_bytes_per_token,
    # LORA_INPUT_BYTES): without checkpointing, on a small model at a long micro-batch, that outgrows the sharded
    # gradients and optimizer states LoRA saves, e.g. llama-3.2-1b FSDP2, data 2, b4 s4096: LoRA 66.2 GiB, full 60.8.
    if lora.breakdown.activations_bytes <= full.breakdown.activations_bytes:
        assert lora.total_bytes <= full.total_bytes
    if qlora is not None:
        assert qlora.breakdown.weights_bytes < lora.breakdown.weights_bytes


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from([f for f in FRAMEWORKS
                                                           if f["framework"] == "fsdp" or f.get("zeroStage") == 3]),
       st.sampled_from(["full", "lora", "qlora"]))
def test_more_sharded_data_ranks_never_increase_model_states(preset, fw, method):
    """From data 2 on. At data 1 framework fsdp's LoRA/QLoRA is torchtune's lora_finetune_single_device, which does
    not shard (estimator/torchtune.py single_device_recipe): no gathered layers and no unsharded root, while from
    data 2 the root (embeddings and output, frameworks.runtime_peak: torch's _fsdp_state.py `_lazy_init`, the root
    is not resharded after the forward) and two gathered layers are held beside the shards, e.g. llama-3.2-1b fsdp
    qlora: 1.03 GiB of weights at data 1, 1.51 at data 2, 1.26 at data 4."""
    m = _method(method)
    states = [_states(e) for d in (2, 4, 8) if (e := train(preset, fw, d, **m)) is not None]
    assert states == sorted(states, reverse=True)


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from([2, 3]), st.sampled_from(["full", "lora"]),
       st.sampled_from([1, 2, 4]), st.sampled_from(["none", "full"]))
def test_offload_optimizer_never_increases_gpu_memory(preset, zero, method, data, ckpt):
    # offloadOptimizer is DeepSpeed's zero_optimization.offload_optimizer: refused elsewhere (spec rule)
    fw = dict(framework="deepspeed", zeroStage=zero)
    base = train(preset, fw, data, method=method, activationCheckpointing=ckpt)
    off = train(preset, fw, data, method=method, activationCheckpointing=ckpt, offloadOptimizer=True)
    assume(base is not None and off is not None)
    assert_well_formed(off)
    assert off.total_bytes <= base.total_bytes


# ---------------------------------------------------------------- planner

CATALOG = load_catalog()


@FAST
@given(st.sampled_from(SERVING_PRESETS + ["llama-3.1-70b"]), st.sampled_from(ENGINES),
       st.sampled_from([4096, 32768]), st.sampled_from([1, 16]), st.sampled_from([0.0, 0.1, 0.3]))
def test_planned_serving_fits_its_gpu(preset, engine, ctx, conc, headroom):
    inf = dict(engine=engine[0], contextLength=ctx, concurrency=conc)
    if engine[1]:
        inf["engineVersion"] = engine[1]
    _assert_plan_fits(dict(model=dict(preset=preset), workload="inference", inference=inf,
                           placement=dict(headroom=headroom)))


@FAST
@given(st.sampled_from(TRAINING_PRESETS + ["llama-3.1-70b"]), st.sampled_from(FRAMEWORKS),
       st.sampled_from(["full", "lora"]), st.sampled_from([0.0, 0.1, 0.3]))
def test_planned_training_fits_its_gpu(preset, fw, method, headroom):
    assume(not (fw["framework"] == "megatron" and method != "full"))
    _assert_plan_fits(dict(model=dict(preset=preset), workload="training",
                           training={**fw, "method": method, "activationCheckpointing": "full"},
                           placement=dict(headroom=headroom)))


def _assert_plan_fits(spec_dict: dict) -> None:
    """Every option the planner offers for `spec_dict` fits its GPU (a spec rackfit refuses is skipped)."""
    try:
        spec = parse_spec(spec_dict)
        p = plan(spec, CATALOG)
    except InvalidWorkload:
        assume(False)
    for o in p.options:
        _assert_fits(spec, o)


def _assert_fits(spec, o) -> None:
    e, pl = o.estimate, o.placement
    assert_well_formed(e)
    gpu = CATALOG.get(pl.instance_type).gpu
    capacity = int(gpu.memory_bytes * (1 - spec.placement.headroom))
    if e.max_concurrency is not None:
        # a serving engine claims its own fraction of the GPU whatever the headroom (planner._option): the
        # engine's budget, within the GPU, must hold every requested sequence per replica in its KV cache
        assert pl.gpu_memory_bytes == e.engine_budget_bytes <= gpu.memory_bytes
        assert e.max_concurrency >= spec.inference.per_replica(pl.data)
        # the cache those sequences need within the pool the engine allocates, and everything within the GPU.
        # (kvCacheTokens is not compared: for hybrid linear-attention models before vLLM 0.21 it is the logged "GPU
        # KV cache size", num_blocks // groups x block_size, not what one request can use: linear_attention.py)
        assert e.breakdown.kv_cache_bytes <= e.kv_cache_pool_bytes
        assert e.total_bytes <= gpu.memory_bytes
        assert e.refused is None and e.engine_starts is not False
    else:
        assert pl.gpu_memory_bytes == capacity
        assert e.total_bytes <= capacity


def test_a_pool_short_of_one_request_does_not_read_as_one():
    """Found by the planner property's `kv_cache_bytes <= kv_cache_pool_bytes`: maxConcurrency was rounded to two
    decimals, so a pool 0.06% short of one contextLength request read 1.0, the engine "started" and the planner placed
    it, where vLLM refuses it (v1/core/kv_cache_utils.py check_enough_kv_cache_memory: needed_memory >
    available_memory). Now rounded down. Llama 3.1 8B on an L40S at gpuMemoryUtilization 0.5, contextLength 49,060
    (47,300 when found; the budget's CUDA graph estimate has since shrunk: cuda_graphs.GRAPH_PRIVATE_BYTES)."""
    from gpus import L40S
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(engine="vllm", contextLength=49060, gpuMemoryUtilization=0.5)))
    e = estimate(spec, gpu=L40S)
    # one request: 32 layers x 8 KV heads x 128 x 2 (K and V) x 2 bytes = 131,072 B a token, x 49,060 tokens in
    # whole 16-token pages (3,067 of them: test_a_request_holds_whole_pages)
    assert e.breakdown.kv_cache_bytes == 131072 * 49072
    assert e.kv_cache_pool_bytes < e.breakdown.kv_cache_bytes
    assert e.max_concurrency == 0.99 and e.engine_starts is False
    assert e.max_concurrency == e.kv_cache_pool_bytes * 100 // e.breakdown.kv_cache_bytes / 100


# ---------------------------------------------------------------- round 2 (issue 22): more properties

# framework deepspeed across its ZeRO stages; stage 0 is DeepSpeed's BF16/FP16 optimizer without partitioning
DEEPSPEED_STAGES = [dict(framework="deepspeed", zeroStage=z) for z in (0, 1, 2, 3)]


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from([1, 2, 3]), st.sampled_from([dict(data=2), dict(data=4)]),
       st.sampled_from(["none", "full"]), st.sampled_from(["adamw", "sgd"]))
def test_deepspeed_runs_pipeline_stages_under_zero_0_and_1_only(preset, zero, layout, ckpt, optimizer):
    """deepspeed/runtime/pipe/engine.py PipelineEngine.__init__ asserts `zero_optimization_stage() <
    ZeroStageEnum.gradients` ("ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism"): a pipelined layout is
    estimated under ZeRO-1 and refused, naming zeroStage, under ZeRO-2 and 3."""
    e = train(preset, dict(framework="deepspeed", zeroStage=zero), {**layout, "pipeline": 2},
              activationCheckpointing=ckpt, optimizer=optimizer)
    assert (e is not None) == (zero < 2)


def test_deepspeed_pipeline_with_zero_2_or_3_is_refused_naming_the_field():
    doc = dict(model=dict(preset="llama-3.1-8b"), workload="training",
               training=dict(framework="deepspeed", zeroStage=3), parallelism=dict(data=2, pipeline=2))
    with pytest.raises(InvalidWorkload) as err:
        parse_spec(doc)
    assert err.value.errors[0][0] == "spec.training.zeroStage"
    assert "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" in err.value.errors[0][1]
    doc["training"]["zeroStage"] = 1
    assert parse_spec(doc).parallelism.pipeline == 2


@FAST
@given(st.sampled_from(TRAINING_PRESETS + ["llama-3.1-70b"]), st.sampled_from([2, 3]), st.sampled_from([4096, 8192]),
       st.sampled_from([1, 4]))
def test_planner_never_offers_deepspeed_pipeline_stages_under_zero_2_or_3(preset, zero, seq, mbs):
    """Found by stating every planned option as a fixed layout: the planner's pipeline search (search.candidates)
    offered e.g. llama-3.1-8b ZeRO-3 at s8192 b4 on 8 L40S as tensor 8 x pipeline 3, a layout DeepSpeed refuses
    (above). Each option the planner offers must itself be a spec rackfit accepts."""
    spec = dict(model=dict(preset=preset), workload="training",
                training=dict(framework="deepspeed", zeroStage=zero, sequenceLength=seq, microBatchSize=mbs))
    p = plan(parse_spec(spec), CATALOG)
    for o in p.options:
        pl = o.placement
        fixed = parse_spec({**spec, "parallelism": dict(tensor=pl.tensor, pipeline=pl.pipeline, data=pl.data,
                                                        expert=pl.expert)})
        assert fixed.parallelism.pipeline == 1
    # a model no single stage holds is rejected with the stageless layout's shortfall, not planned in stages
    for r in p.rejected:
        assert "pipeline 1 " in r.reason or "needs more than" not in r.reason


@FAST
@given(st.sampled_from(TRAINING_PRESETS), st.sampled_from(["full", "lora", "qlora"]), st.sampled_from([2, 4, 8]),
       st.sampled_from(["none", "selective", "full"]), st.sampled_from(["adamw", "sgd", "adamw8bit"]),
       st.sampled_from([1, 4]))
def test_zero_stages_partition_more_as_they_rise(preset, method, data, ckpt, optimizer, mbs):
    """Per GPU over the same data-parallel GPUs: the optimizer states (with the step's temporaries) never grow from
    stage 1 on, nor the gradients from stage 2 on (stage 1 keeps every gradient until its step; stage 2 partitions
    them in the backward's hooks). The weights of stage 3 may exceed stage 2's replica, as it holds its partition
    beside the parameters it has gathered, but never by more than that partition: what is gathered at once is at most
    the whole stored model (partition_parameters.py `_all_gather`: `param.ds_numel` elements of the stored dtype;
    more only with the weights torch's linear keeps for its backward without checkpointing, all of them)."""
    m = _method(method)
    kw = dict(activationCheckpointing=ckpt, optimizer=optimizer, microBatchSize=mbs, **m)
    es = {z: train(preset, dict(framework="deepspeed", zeroStage=z), data, **kw) for z in (1, 2, 3)}
    assume(all(e is not None for e in es.values()))
    b = {z: e.breakdown for z, e in es.items()}
    if es[1].peak_phase == es[2].peak_phase == es[3].peak_phase:
        assert b[3].optimizer_states_bytes <= b[2].optimizer_states_bytes <= b[1].optimizer_states_bytes
    w2 = b[2].weights_bytes
    assert b[3].weights_bytes <= w2 + -(-w2 // data), (b[3].weights_bytes, w2)


def test_zero3_gathers_a_qlora_base_packed():
    """Found by the property above (llama-3.2-1b QLoRA, ZeRO-3 over 4 GPUs): ZeRO-3's gathered parameters were
    bounded by stage3_max_live_parameters + the prefetch bucket in 16-bit elements of the parameter count, so a 1B
    QLoRA base (0.96 GiB stored) was counted as 1.96 GiB gathered beside its partition. DeepSpeed gathers each
    parameter as it is stored (`param.ds_numel` elements of `param.dtype`): the packed 4-bit base, never more than
    it all."""
    kw = dict(method="qlora", precision="nf4", activationCheckpointing="full")
    z2 = train("llama-3.2-1b", dict(framework="deepspeed", zeroStage=2), 4, **kw)
    z3 = train("llama-3.2-1b", dict(framework="deepspeed", zeroStage=3), 4, **kw)
    stored = z2.breakdown.weights_bytes   # the whole base and adapters, replicated under stage 2
    assert stored < 1.1 * 2**30
    assert z3.breakdown.weights_bytes == stored // 4 + stored


# ---------------------------------------------------------------- round 2: serving engines on a GPU

# one architecture, two sizes: Hopper at 80 and 141 GB, Ampere at 40 and 80 GB
H200 = GPU(model="H200", product="NVIDIA-H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
A100_40 = GPU(model="A100", product="NVIDIA-A100-SXM4-40GB", memoryGB=40, memoryMiB=40960, architecture="ampere")
A100_80 = GPU(model="A100", product="NVIDIA-A100-SXM4-80GB", memoryGB=80, memoryMiB=81920, architecture="ampere")
GPUS = {"H100": H100, "H200": H200, "A100-40": A100_40, "A100-80": A100_80}


@cache
def _served_on(gpu: str, preset: str, precision: str, engine: tuple, tp: int, kv: str, ctx: int, conc: int,
               settings_: tuple = ()):
    inf = dict(engine=engine[0], contextLength=ctx, concurrency=conc, kvCachePrecision=kv, **dict(settings_))
    if engine[1]:
        inf["engineVersion"] = engine[1]
    doc = dict(model=dict(preset=preset), workload="inference", precision=precision, inference=inf,
               parallelism=dict(tensor=tp))
    try:
        return estimate(parse_spec(doc), gpu=GPUS[gpu])
    except InvalidWorkload:
        return None


def _admits(e, conc: int) -> bool:
    return e is not None and not e.refused and e.engine_starts is not False and e.max_concurrency >= conc


SERVE_DRAW = (st.sampled_from(SERVING_PRESETS + ["llama-3.1-70b"]), st.sampled_from(PRECISIONS),
              st.sampled_from(SERVING_ENGINES), st.sampled_from([1, 2, 4, 8]), st.sampled_from(["bf16", "fp8"]),
              st.sampled_from([4096, 16384, 65536]), st.sampled_from([1, 3, 16]))


@FAST
@given(*SERVE_DRAW, st.sampled_from(list(GPUS)))
def test_serving_admission_is_monotone_in_concurrency_and_kv_precision(preset, precision, engine, tp, kv, ctx, conc,
                                                                         gpu):
    """What admits `conc` requests admits `conc - 1` (vLLM: check_enough_kv_cache_memory and max_num_seqs; the budget
    does not depend on concurrency, engine_defaults.settings), and an fp8 KV cache (half a bf16 token's bytes, the same
    pages) holds no fewer tokens or requests than bf16 on the same layout."""
    e = _served_on(gpu, preset, precision, engine, tp, kv, ctx, conc)
    assume(e is not None)
    assert_well_formed(e)
    if conc > 1 and _admits(e, conc):
        assert _admits(_served_on(gpu, preset, precision, engine, tp, kv, ctx, conc - 1), conc - 1)
    if kv == "bf16":
        f = _served_on(gpu, preset, precision, engine, tp, "fp8", ctx, conc)
        if f is not None and not f.refused and not e.refused:
            assert f.kv_cache_tokens >= e.kv_cache_tokens and f.max_concurrency >= e.max_concurrency


@FAST
@given(*SERVE_DRAW, st.sampled_from([("H100", "H200"), ("A100-40", "A100-80")]))
def test_a_larger_gpu_of_the_same_architecture_admits_what_a_smaller_one_does(preset, precision, engine, tp, kv, ctx,
                                                                                conc, pair):
    """The same kernels, graphs and profile on more memory: the engine's fraction of it leaves a larger KV cache."""
    small, large = (_served_on(g, preset, precision, engine, tp, kv, ctx, conc) for g in pair)
    assume(_admits(small, conc))
    assert _admits(large, conc)
    assert large.kv_cache_tokens >= small.kv_cache_tokens


@FAST
@given(*SERVE_DRAW, st.sampled_from([("maxNumSeqs", 64, 512), ("maxNumBatchedTokens", 4096, 16384)]))
def test_more_scheduled_sequences_or_batched_tokens_never_leave_more_kv_cache(preset, precision, engine, tp, kv, ctx,
                                                                                conc, knob):
    """The profile forward runs max_num_batched_tokens tokens and the sampler max_num_seqs sequences (vLLM
    gpu_model_runner.profile_run, _dummy_sampler_run; SGLang's and TensorRT-LLM's estimation runs alike), and CUDA
    graphs are captured up to max_num_seqs: the memory they take comes out of the KV cache."""
    name, lo, hi = knob
    assume(engine[0] != "tensorrt-llm" or name == "maxNumSeqs")
    few, many = (_served_on("H100", preset, precision, engine, tp, kv, ctx, conc, ((name, v),)) for v in (lo, hi))
    assume(few is not None and many is not None and not few.refused and not many.refused)
    assert many.kv_cache_tokens <= few.kv_cache_tokens


@cache
def _anywhere(preset: str, workload: str):
    doc = dict(model=dict(preset=preset), workload=workload)
    if workload == "training":
        doc["training"] = dict(framework="fsdp", activationCheckpointing="full")
    return plan(parse_spec(doc), CATALOG)


@FAST
@given(st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b"]), st.sampled_from(["inference", "training"]),
       st.lists(st.tuples(st.sampled_from(sorted(CATALOG.instance_types)), st.floats(0, 1), st.floats(0, 1)),
                min_size=1, max_size=5), st.sampled_from(sorted(CATALOG.instance_types)))
def test_a_fleet_with_more_free_gpus_places_what_a_smaller_one_does(preset, workload, nodes, extra):
    """planner.place on a fleet whose nodes have as many free GPUs or more, and one more node, never answers "no room"
    where the smaller fleet placed the workload."""
    def fleet(free_share: list[float], more: bool) -> Inventory:
        rows = [(f"n{i}", {INSTANCE_TYPE_LABEL: t}, CATALOG.get(t).gpus_per_node,
                 CATALOG.get(t).gpus_per_node - int(CATALOG.get(t).gpus_per_node * f))
                for i, ((t, _, _), f) in enumerate(zip(nodes, free_share, strict=True))]
        if more:
            rows.append(("extra", {INSTANCE_TYPE_LABEL: extra}, CATALOG.get(extra).gpus_per_node, 0))
        return Inventory.from_nodes(rows)
    anywhere = _anywhere(preset, workload)
    small = place(anywhere, CATALOG, fleet([a for _, a, _ in nodes], False))
    large = place(anywhere, CATALOG, fleet([max(a, b) for _, a, b in nodes], True))
    if small.chosen is not None:
        assert large.chosen is not None


@settings(FAST, max_examples=min(FAST.max_examples, 12))
@given(st.sampled_from(["llama-3.1-8b", "qwen3-next-80b-a3b"]),
       st.sampled_from([("vllm", None), ("vllm", "0.11.0"), ("vllm", "0.19.0"), ("sglang", None)]),
       st.sampled_from(["H100", "H200"]), st.sampled_from([2, 4]), st.sampled_from([0.3, 0.6]),
       st.sampled_from([131072, 262144]))
def test_the_largest_context_that_fits_fits(preset, engine, gpu, tp, gmu, ctx):
    """Where one contextLength request does not fit, the context the refusal names fits when asked for (vLLM V1:
    check_enough_kv_cache_memory's estimate_max_model_len; SGLang: its pool, max_req_len)."""
    e = _served_on(gpu, preset, "bf16", engine, tp, "bf16", ctx, 1, (("gpuMemoryUtilization", gmu),))
    assume(e is not None and not e.refused and e.max_concurrency < 1)
    note = next(n for n in e.notes if f"one request of contextLength {ctx} " in n)
    largest = int(note.split("about ")[1].split(" tokens")[0])
    assume(largest >= 16)
    f = _served_on(gpu, preset, "bf16", engine, tp, "bf16", largest, 1, (("gpuMemoryUtilization", gmu),))
    assert f is not None and not any(f"one request of contextLength {largest} " in n for n in f.notes)
    # the request fits; from vLLM 0.20.0 a hybrid model may still be refused for its max_num_seqs states
    # (linear_attention.mamba_blocks_refusal), which is checked only once a request fits
    assert (not f.refused and f.max_concurrency >= 1) or "Mamba cache blocks" in f.refused, (largest, f.refused)


def test_a_hybrid_models_largest_context_is_the_longest_request_its_pool_holds():
    """Found by the property above: for a hybrid linear-attention model the refusal named the cache's logged tokens
    as the largest context. From vLLM 0.21 those are max_concurrency x max_model_len, a request's pages amortized over
    contextLength with its linear states; a shorter request carries the same states over fewer tokens, so the named
    context did not fit (Qwen3-Next-80B on 2 x H200 at 0.6, contextLength 262,144: 259,392 named, 0.99 of a request
    fits). Before 0.21 the logged tokens (num_blocks // groups x block) named 65,776 where 261,120 fit. vLLM names
    the longest max_model_len whose pages fit (kv_cache_utils.estimate_max_model_len). The current release at 0.598:
    its budget's CUDA graph estimate shrank with the pieces (cuda_graphs.GRAPH_PRIVATE_BYTES), and at 0.6 one request
    now fits. From 0.28 prefix caching is on by default for hybrids, 2 states a linear layer (S1803): 251,328 ->
    249,696."""
    for version, util, named in ((None, 0.598, 249_696), ("0.11.0", 0.6, 255_680)):
        e = _served_on("H200", "qwen3-next-80b-a3b", "bf16", ("vllm", version), 2, "bf16", 262144, 1,
                       (("gpuMemoryUtilization", util),))
        assert e.max_concurrency < 1 and e.kv_cache_tokens != named
        assert any(f"the largest context that fits is about {named} tokens" in n for n in e.notes)
        fits = _served_on("H200", "qwen3-next-80b-a3b", "bf16", ("vllm", version), 2, "bf16", named, 1,
                          (("gpuMemoryUtilization", util),))
        longer = _served_on("H200", "qwen3-next-80b-a3b", "bf16", ("vllm", version), 2, "bf16", named + 16, 1,
                            (("gpuMemoryUtilization", util),))
        assert not any(f"one request of contextLength {named} " in n for n in fits.notes)
        assert any(f"one request of contextLength {named + 16} " in n for n in longer.notes)
        assert longer.max_concurrency < 1
        if version is None:  # 0.20.0 on: the request fits, but 1,024 sequences' states exceed the pool's blocks
            assert fits.refused and "maxNumSeqs 1024 exceeds the" in fits.refused
        else:
            assert fits.max_concurrency >= 1


def test_a_request_holds_whole_pages():
    """Found stating "admitted implies the cache holds contextLength tokens" (kvCacheTokens counts whole blocks): vLLM
    V1 sizes one request as cdiv(max_model_len, block_size) pages of each full-attention layer (kv_cache_interface.py
    FullAttentionSpec.max_memory_usage_bytes), checks that against the pool (check_enough_kv_cache_memory) and divides
    the pool's blocks by it (get_max_concurrency_for_kv_cache_config); rackfit counted contextLength tokens, so a pool
    within 15 tokens of the last page admitted a request vLLM refuses. Llama 3.1 8B, contextLength 47,300 (2,957
    pages: 47,312 tokens) on an L40S, with gpuMemoryUtilization set so the pool holds 47,305 tokens."""
    from gpus import L40S

    def at(gmu: float):
        return estimate(parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=dict(
            engine="vllm", contextLength=47300, gpuMemoryUtilization=gmu))), gpu=L40S)
    e = at(0.5)
    # the budget is gpuMemoryUtilization x the GPU's memory, and the pool what the rest leaves: 47,305 tokens' bytes
    e = at(0.5 + (131072 * 47305 - e.kv_cache_pool_bytes) / (e.engine_budget_bytes / 0.5))
    assert 131072 * 47300 <= e.kv_cache_pool_bytes < 131072 * 47312, e.kv_cache_pool_bytes
    assert e.kv_cache_tokens == 47296 and e.max_concurrency < 1 and e.engine_starts is False
    assert any("the largest context that fits is about 47296 tokens" in n for n in e.notes)
