"""Invariant audit, round 3 (issue 22): consistency between the surfaces that show one estimate (the admission
webhook's verdict and near-miss warning, status.estimate and the Fits condition, the CLI's text), SGLang and
TensorRT-LLM serving by release, training knobs, and the spec's validation (pydantic and the generated CRD).
Derandomized and few draws, as tests/unit/test_estimator_invariants.py."""

from __future__ import annotations

import io
import json
import re
import tempfile
import types
import typing
from contextlib import redirect_stdout
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_estimator_invariants import FAST, GPUS, _freeze, _served_on, assert_well_formed

from rackfit.api.status import estimate_of, estimate_view, status_view
from rackfit.catalog import load_catalog
from rackfit.cli import _estimate_text, main
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.errorband import regime
from rackfit.estimator.measured_bands import BANDS
from rackfit.models import resolve
from rackfit.planner import plan
from rackfit.planner.admission import check
from rackfit.spec import parse_spec

CATALOG = load_catalog()
TYPES = sorted(CATALOG.instance_types)
SMALL = settings(FAST, max_examples=max(1, FAST.max_examples // 2))


# ---------------------------------------------------------------- surfaces

def _serving_doc(preset, engine, ctx, conc, types, gmu=None, precision="bf16"):
    inf = dict(engine=engine[0], contextLength=ctx, concurrency=conc)
    if engine[1]:
        inf["engineVersion"] = engine[1]
    if gmu and engine[0] != "transformers":
        inf["gpuMemoryUtilization"] = gmu
    return dict(model=dict(preset=preset), workload="inference", precision=precision, inference=inf,
                placement=dict(instanceTypes=types))


def _training_doc(preset, fw, method, seq, mbs, types):
    tr = dict(fw, method=method, sequenceLength=seq, microBatchSize=mbs, activationCheckpointing="full")
    return dict(model=dict(preset=preset), workload="training", precision="nf4" if method == "qlora" else "bf16",
                training=tr, placement=dict(instanceTypes=types))


DOCS = st.one_of(
    st.builds(_serving_doc, st.sampled_from(["llama-3.2-1b", "llama-3.1-8b", "qwen3-30b-a3b", "llama-3.1-70b"]),
              st.sampled_from([("vllm", None), ("vllm", "0.7.3"), ("vllm", "0.11.0"), ("sglang", None),
                               ("sglang", "0.4.3"), ("tensorrt-llm", None), ("transformers", None)]),
              st.sampled_from([4096, 32768, 131072]), st.sampled_from([1, 8, 64]),
              st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True),
              st.sampled_from([None, 0.5, 0.95]), st.sampled_from(["bf16", "fp8"])),
    st.builds(_training_doc, st.sampled_from(["llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b"]),
              st.sampled_from([dict(framework="fsdp"), dict(framework="deepspeed", zeroStage=3),
                               dict(framework="transformers")]),
              st.sampled_from(["full", "lora", "qlora"]), st.sampled_from([2048, 8192]), st.sampled_from([1, 4]),
              st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True)))


def _band_names_a_measured_regime(text: str, spec, gpu) -> None:
    """An error band is "unmeasured (...)" exactly where measured_bands has no row for the regime, else that
    regime's numbers."""
    key = regime(spec, gpu)
    if key not in BANDS:
        assert text.startswith("unmeasured (no measured rows for "), text
        return
    lo, hi, rows, quantity, _, _ = BANDS[key]
    assert text.startswith(f"{lo:+.1f}%..{hi:+.1f}% of {quantity} on {rows} measured row"), (text, key)
    assert f"({key[0]} {key[1]}, " in text


@SMALL
@given(DOCS)
def test_what_the_planner_places_the_webhook_admits_and_the_surfaces_agree(doc):
    """plan() and the webhook's check() say the same (a chosen option iff no InvalidWorkload); every option the
    planner offers, stated back as a fixed layout on its one instance type, is admitted and estimated the same; its
    error band is the regime's in measured_bands (or "unmeasured") and reaches status.estimate, the Fits message's
    text, the near-miss warning and the CLI's text unchanged."""
    spec = parse_spec(doc)
    try:
        p = plan(spec, CATALOG)
    except InvalidWorkload as refused:   # e.g. contextLength beyond the model's maximum: the webhook says the same
        with pytest.raises(InvalidWorkload) as err:
            check(doc, CATALOG)
        assert err.value.errors == refused.errors
        return
    try:
        warnings = check(doc, CATALOG)
    except InvalidWorkload:
        assert p.chosen is None
        return
    assert p.chosen is not None
    est = p.chosen.estimate
    gpu = CATALOG.get(p.chosen.placement.instance_type).gpu
    _band_names_a_measured_regime(est.error_band, spec, gpu)
    assert estimate_view(est)["errorBand"] == est.error_band
    _band_names_a_measured_regime(estimate(spec).error_band, spec, None)   # no GPU: the runtime's "any" row
    assert f"measured error of this regime: {est.error_band}" in _estimate_text(est, "t")
    for w in warnings:
        assert w.endswith(f"this regime's measured error is {est.error_band}"), w
    for o in [p.chosen, *p.alternatives]:
        pl = o.placement
        fixed = {**doc, "placement": dict(instanceTypes=[pl.instance_type]),
                 "parallelism": dict(tensor=pl.tensor, pipeline=pl.pipeline, data=pl.data, expert=pl.expert)}
        check(fixed, CATALOG)   # admitted
        assert not o.estimate.refused and o.estimate.engine_starts is not False
        again = plan(parse_spec(fixed), CATALOG).chosen
        assert again is not None and again.placement.total_gpus == pl.total_gpus
        assert again.estimate.total_bytes == o.estimate.total_bytes
        assert again.estimate.error_band == o.estimate.error_band
    # `rackfit estimate -f FILE --instance-type T -o json` on the chosen layout, and the status a restart reads back
    c = p.chosen.placement
    fixed = {**doc, "parallelism": dict(tensor=c.tensor, pipeline=c.pipeline, data=c.data, expert=c.expert)}
    path = Path(tempfile.mkdtemp()) / "spec.json"
    path.write_text(json.dumps(fixed))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["estimate", "-f", str(path), "--instance-type", c.instance_type, "-o", "json"]) == 0
    shown = json.loads(out.getvalue())["estimate"]
    assert shown == estimate_view(est)
    assert estimate_of(status_view(estimate=est)).error_band == est.error_band


@SMALL
@given(st.sampled_from(["llama-3.2-1b", "llama-3.1-8b", "gemma-2-27b", "qwen3-next-80b-a3b", "llama-3.1-70b"]),
       st.sampled_from([("vllm", None), ("vllm", "0.9.2"), ("vllm", "0.11.0"), ("sglang", None), ("sglang", "0.4.3"),
                        ("tensorrt-llm", None)]),
       st.sampled_from(list(GPUS)), st.sampled_from([1, 2]), st.sampled_from([0.3, 0.5, 0.9]),
       st.sampled_from([32768, 131072, 10**6]))
def test_the_largest_context_named_is_capped_by_the_model_and_fits(preset, engine, gpu, tp, gmu, ctx):
    """Every "largest context that fits" / "requests longer than about N tokens" is at most the model's
    maxPositionEmbeddings (a longer contextLength is refused naming the field), and fed back it fits."""
    arch = resolve(parse_spec(dict(model=dict(preset=preset), workload="inference")).model)
    e = _served_on(gpu, preset, "bf16", engine, tp, "bf16", ctx, 1, (("gpuMemoryUtilization", gmu),))
    if ctx > arch.max_position_embeddings:
        assert e is None
        with pytest.raises(InvalidWorkload) as err:
            estimate(parse_spec(dict(model=dict(preset=preset), workload="inference",
                                     inference=dict(engine=engine[0], contextLength=ctx))), gpu=GPUS[gpu])
        assert err.value.errors[0][0] == "spec.inference.contextLength"
        return
    assume(e is not None and not e.refused and e.max_concurrency < 1)
    named = [int(m) for n in e.notes for m in re.findall(r"(?:fits is|longer than) about (\d+) tokens", n)]
    assert named, e.notes
    for largest in named:
        assert largest <= arch.max_position_embeddings
        assume(largest >= 16)
        f = _served_on(gpu, preset, "bf16", engine, tp, "bf16", largest, 1, (("gpuMemoryUtilization", gmu),))
        assert f is not None and not f.refused and f.max_concurrency >= 1, (largest, f and f.max_concurrency)


# ---------------------------------------------------------------- SGLang and TensorRT-LLM by release

SGLANG = [("sglang", v) for v in (None, "0.3.5", "0.4.1", "0.4.3", "0.4.5", "0.4.7", "0.4.8", "0.5.3", "0.5.5",
                                  "0.5.8", "0.5.10")]
TRTLLM = [("tensorrt-llm", None, b) for b in (None, "pytorch", "trt")]
SERVING_PRESETS = ["llama-3.2-1b", "llama-3.1-8b", "gemma-2-27b", "qwen3-30b-a3b", "qwen3-next-80b-a3b",
                   "llama-3.1-70b"]


def _engine_settings(engine: tuple, **more) -> tuple:
    return tuple(sorted(({"tensorrtLlmBackend": engine[2]} if len(engine) > 2 and engine[2] else {}).items())
                 ) + tuple(sorted(more.items()))


@FAST
@given(st.sampled_from(SERVING_PRESETS), st.sampled_from(["bf16", "fp8", "int4"]), st.sampled_from(SGLANG + TRTLLM),
       st.sampled_from(list(GPUS)), st.sampled_from([1, 2, 8]), st.sampled_from([4096, 32768]))
def test_sglang_and_trtllm_pool_and_memory_fraction(preset, precision, engine, gpu, tp, ctx):
    """The pool is never negative, and a larger memory fraction (SGLang's mem_fraction_static, TensorRT-LLM's
    free_gpu_memory_fraction) never leaves fewer KV tokens nor fewer requests."""
    seen = []
    for gmu in (0.5, 0.7, 0.85, 0.95):
        e = _served_on(gpu, preset, precision, engine[:2], tp, "bf16", ctx, 1,
                       _engine_settings(engine, gpuMemoryUtilization=gmu))
        if e is None:
            return
        assert_well_formed(e)
        assert e.kv_cache_pool_bytes >= 0 and e.kv_cache_tokens >= 0
        seen.append(e)
    live = [e for e in seen if not e.refused]
    assert [e.kv_cache_tokens for e in live] == sorted(e.kv_cache_tokens for e in live)
    assert [e.max_concurrency for e in live] == sorted(e.max_concurrency for e in live)


@FAST
@given(st.sampled_from(SERVING_PRESETS + ["deepseek-v3"]), st.sampled_from(["bf16", "fp8", "int4"]),
       st.sampled_from(SGLANG + TRTLLM))
def test_sglang_and_trtllm_tensor_degree_never_raises_weights_per_gpu(preset, precision, engine):
    weights = []
    for tp in (1, 2, 4, 8):
        e = _served_on("H200", preset, precision, engine[:2], tp, "bf16", 4096, 1, _engine_settings(engine))
        if e is not None:
            weights.append(e.breakdown.weights_bytes)
    assert weights == sorted(weights, reverse=True)


def _dp(preset, version, tp, dp, precision="bf16"):
    more = {"dataParallelAttention": dp} if dp else {}
    return _served_on("H200", preset, precision, ("sglang", version), tp, "bf16", 8192, 16, tuple(sorted(more.items())))


@FAST
@given(st.sampled_from(["deepseek-v3", "qwen3-30b-a3b", "llama-3.1-70b", "qwen3-next-80b-a3b"]),
       st.sampled_from([v for _, v in SGLANG if v is None or v >= "0.4.5"]), st.sampled_from(["bf16", "fp8"]))
def test_sglang_dp_attention_by_degree(preset, version, precision):
    """--dp-size 1 is no DP attention (server_args.py: enable_dp_attention needs dp_size > 1; the field is refused
    below 2, naming it). From 0.4.5 a DP rank's attention is split over tp / dp GPUs (get_attention_tp_size), the
    experts and MLPs over all tp: so a larger dp never LOWERS the weights per GPU (its attention shard, and from
    0.5.8 its embedding shard, are over fewer GPUs), never raises the KV tokens a rank caches (its KV heads at
    attn_tp; MLA's latent is whole either way), and every dp leaves the experts' and MLPs' share as without DP."""
    with pytest.raises(InvalidWorkload) as err:
        parse_spec(dict(model=dict(preset=preset), workload="inference", parallelism=dict(tensor=8),
                        inference=dict(engine="sglang", dataParallelAttention=1)))
    assert err.value.errors[0][0] == "spec.inference.dataParallelAttention"
    none = _dp(preset, version, 8, None, precision)
    assume(none is not None)
    es = [none] + [_dp(preset, version, 8, dp, precision) for dp in (2, 4, 8)]
    assert all(e is not None for e in es)
    w = [e.breakdown.weights_bytes for e in es]
    assert w == sorted(w), w
    live = [e for e in es if not e.refused]
    t = [e.kv_cache_tokens for e in live]
    assert t == sorted(t, reverse=True), t


# ---------------------------------------------------------------- training knobs

T_PRESETS = ["llama-3.2-1b", "llama-3.1-8b", "qwen3-30b-a3b", "gemma-2-27b"]
T_FRAMEWORKS = [dict(framework="transformers"), dict(framework="transformers", zeroStage=2), dict(framework="fsdp"),
                dict(framework="fsdp", fsdpVersion=1), dict(framework="deepspeed", zeroStage=2),
                dict(framework="deepspeed", zeroStage=1), dict(framework="deepspeed", zeroStage=3),
                dict(framework="megatron")]


@cache
def _trained(preset: str, precision: str, training: tuple, parallelism: tuple):
    doc = dict(model=dict(preset=preset), workload="training", precision=precision, training=dict(training),
               parallelism=dict(parallelism))
    try:
        return estimate(parse_spec(doc), gpu=GPUS["H100"])
    except InvalidWorkload:
        return None


def _t(preset, fw, method="full", layout=(("data", 2),), **kw):
    precision = "nf4" if method == "qlora" else "bf16"
    return _trained(preset, precision, _freeze({**fw, "method": method, **kw}), tuple(sorted(layout)))


def _states(e) -> int:
    b = e.breakdown
    return b.weights_bytes + b.gradients_bytes + b.optimizer_states_bytes


@FAST
@given(st.sampled_from(T_PRESETS), st.sampled_from([f for f in T_FRAMEWORKS if f.get("zeroStage", 1) < 2]),
       st.sampled_from(["full", "lora"]), st.sampled_from(["none", "full"]), st.sampled_from([1, 2]),
       st.sampled_from([1, 2, 4]), st.sampled_from([1, 4]))
def test_pipeline_stages_never_raise_per_gpu_model_states(preset, fw, method, ckpt, tensor, data, mbs):
    """A stage holds its layers' weights, gradients and optimizer states (and the embedding or the output on the
    first and last stage): more stages never hold more. DeepSpeed's pipeline engine takes ZeRO-1 only (refused
    above, test_estimator_invariants). FSDP2 from 2 stages on: a pipelined stage is never resharded after its forward
    (torchtitan's apply_fsdp, reshard_after_forward = not pp_enabled) and the schedule runs every micro-batch's
    backward but the last under set_requires_gradient_sync(False) and set_reshard_after_backward(False)
    (torch/distributed/pipelining/stage.py, backward_maybe_with_nosync), so each stage keeps its layers' unsharded
    gradients in the reduce dtype across micro-batches (frameworks.runtime_peak): e.g. gemma-2-27b over 2 data ranks,
    b4 s16384, 8-bit AdamW, 133 GiB of states in one stage, 146 in each of 2, 84 in each of 4."""
    assume(method == "full" or fw["framework"] != "megatron")
    stages = (2, 4, 8) if fw["framework"] == "fsdp" else (1, 2, 4)
    states = []
    for pp in stages:
        e = _t(preset, fw, method, (("data", data), ("pipeline", pp), ("tensor", tensor)),
               activationCheckpointing=ckpt, microBatchSize=mbs)
        if e is not None:
            states.append(_states(e))
    assert states == sorted(states, reverse=True), states


@FAST
@given(st.sampled_from(T_PRESETS), st.sampled_from(T_FRAMEWORKS), st.sampled_from(["full", "lora", "qlora"]),
       st.sampled_from(["none", "selective", "full"]), st.sampled_from([2048, 8192]))
def test_gradient_accumulation_never_lowers_the_peak(preset, fw, method, ckpt, seq):
    """Accumulating micro-batches keeps the gradients between them (and, for ZeRO-2's partitioned gradients or
    FSDP's reduce-scatter, an accumulation buffer): a step of 4 micro-batches never needs less than one of 1."""
    assume(method == "full" or fw["framework"] != "megatron")
    one = _t(preset, fw, method, activationCheckpointing=ckpt, sequenceLength=seq)
    four = _t(preset, fw, method, activationCheckpointing=ckpt, sequenceLength=seq, gradientAccumulationSteps=4)
    assume(one is not None and four is not None)
    assert four.total_bytes >= one.total_bytes


@FAST
@given(st.sampled_from(T_PRESETS), st.sampled_from([dict(framework="deepspeed", zeroStage=z) for z in (1, 2, 3)]
                                                   + [dict(framework="fsdp"), dict(framework="fsdp", fsdpVersion=1),
                                                      dict(framework="transformers", zeroStage=3)]),
       st.sampled_from(["full", "lora"]), st.sampled_from([1, 2, 4]), st.sampled_from(["none", "full"]))
def test_offload_never_raises_gpu_memory(preset, fw, method, data, ckpt):
    base = _t(preset, fw, method, (("data", data),), activationCheckpointing=ckpt)
    assume(base is not None)
    for off in (dict(offloadOptimizer=True), dict(offloadOptimizer=True, offloadParameters=True)):
        e = _t(preset, fw, method, (("data", data),), activationCheckpointing=ckpt, **off)
        if e is not None:
            assert e.total_bytes <= base.total_bytes, (off, e.total_bytes, base.total_bytes)


@FAST
@given(st.sampled_from(T_PRESETS), st.sampled_from([dict(framework="fsdp"), dict(framework="megatron")]),
       st.sampled_from(["tensorwise", "rowwise", "mxfp8"]), st.sampled_from([1, 2, 4]), st.booleans())
def test_float8_never_raises_weights_but_transformer_engines_cache(preset, fw, recipe, data, fp8_gather):
    """torchao's Float8Linear casts each weight in its forward (a transient) and with float8AllGather gathers it in
    fp8: the weights held never grow. Transformer Engine under Megatron keeps each linear's fp8 weight and its
    column-wise copy in `_fp8_workspaces["weight"]` beside the 16-bit parameter buffer (estimator/float8.py: linear.py
    quantize_weight, TELinear.forward's is_first_microbatch; a MoE's experts too, GroupedLinear's "weight{i}"), 2 bytes
    a linear parameter (MXFP8: and an e8m0 scale a 32 elements for each copy): at most the 16-bit weights again, 1/32
    more in MXFP8, where a MoE's linears are nearly all its parameters; with --fp8-param-gather (float8AllGather) the
    parameters are Float8Tensors (1 byte and the column-wise copy's byte, replacing 2 bytes) and nothing is cached,
    but MXFP8's pair keeps an e8m0 scale a 32 elements for each copy (float8.te_weight_bytes): at most 1/32 more than
    the 16-bit weights."""
    base = _t(preset, fw, "full", (("data", data),))
    e = _t(preset, fw, "full", (("data", data),), float8=recipe, float8AllGather=fp8_gather)
    assume(base is not None and e is not None)
    w, w0 = e.breakdown.weights_bytes, base.breakdown.weights_bytes
    if fw["framework"] == "megatron" and not fp8_gather:
        assert w0 < w <= w0 * (2 + (1 / 32 if recipe == "mxfp8" else 0))
    elif fw["framework"] == "megatron" and recipe == "mxfp8":
        assert w <= w0 * (1 + 1 / 32)
    else:
        assert w <= w0


@FAST
@given(st.sampled_from(T_PRESETS), st.sampled_from([f for f in T_FRAMEWORKS if f["framework"] != "megatron"]),
       st.sampled_from(["lora", "qlora"]), st.sampled_from([1, 2, 4]), st.sampled_from(["none", "full"]))
def test_a_higher_lora_rank_never_lowers(preset, fw, method, data, ckpt):
    es = [_t(preset, fw, method, (("data", data),), activationCheckpointing=ckpt, loraRank=r) for r in (8, 16, 64)]
    assume(all(e is not None for e in es))
    for a, b in zip(es, es[1:], strict=False):
        assert _states(b) >= _states(a)
        assert b.total_bytes >= a.total_bytes


# ---------------------------------------------------------------- spec validation and the CRD

def _values(annotation, info) -> st.SearchStrategy:
    """Values of one spec field, valid and not (edges of its bounds, every literal, a foreign word)."""
    kind = annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kind = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return st.sampled_from([*typing.get_args(kind), "bogus"])
    if typing.get_origin(kind) is list:
        return st.lists(_values(typing.get_args(kind)[0], info), max_size=3)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 64, 4096])
    if kind is float:
        return st.sampled_from([-0.1, 0.0, 0.05, 0.5, 0.9, 1.0, 1.5])
    if kind is str:
        return st.sampled_from(["0.4.3", "0.4.5", "0.5.8", "0.7.3", "0.8.5", "0.10.2", "0.11.0", "4.48", "x"])
    return st.nothing()


def _block(model, names: list[str]) -> st.SearchStrategy:
    fields = {n: f for n, f in model.model_fields.items() if n in names}
    return st.fixed_dictionaries({}, optional={f.alias or n: _values(f.annotation, f) for n, f in fields.items()})


_INF = ["engine", "context_length", "concurrency", "gpu_memory_utilization", "max_num_seqs", "engine_version",
        "tensorrt_llm_backend", "extensible_kv_cache", "data_parallel_attention", "speculative_method",
        "speculative_tokens", "kv_cache_precision", "max_loras", "cuda_graphs", "vllm_use_v1"]
_TRAIN = ["framework", "method", "optimizer", "micro_batch_size", "sequence_length", "activation_checkpointing",
          "lora_rank", "lora_targets", "lora_dropout", "zero_stage", "fsdp_version", "float8", "float8_all_gather",
          "offload_optimizer", "offload_parameters", "gradient_accumulation_steps", "sgd_momentum",
          "transformers_version", "sequence_parallel", "virtual_stages", "compile"]


@st.composite
def _docs(draw) -> dict:
    from rackfit.spec import Inference, Parallelism, Training
    workload = draw(st.sampled_from(["inference", "training"]))
    doc = dict(model=dict(preset=draw(st.sampled_from(["llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3"]))),
               workload=workload, precision=draw(st.sampled_from(["bf16", "fp8", "nf4", "int4", "fp16"])))
    if draw(st.booleans()):
        doc["parallelism"] = draw(_block(Parallelism, ["tensor", "pipeline", "data", "expert"]))
    if workload == "inference":
        doc["inference"] = draw(_block(Inference, _INF))
    else:
        doc["training"] = draw(_block(Training, _TRAIN))
    return doc


def _dp_doc(version, tensor, dp, data) -> dict:
    inf = dict(engine="sglang", dataParallelAttention=dp)
    if version:
        inf["engineVersion"] = version
    return dict(model=dict(preset="deepseek-v3"), workload="inference", inference=inf,
                parallelism=dict(tensor=tensor, data=data))


# SGLang's DP attention, whose rules cross the inference and parallelism blocks and the release
DP_DOCS = st.builds(_dp_doc, st.sampled_from([None, "0.4", "0.4.4", "0.4.5", "0.4.10"]), st.sampled_from([4, 8]),
                    st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2]))


@cache
def _spec_schema() -> dict:
    from rackfit.api import crdgen
    (version,) = crdgen.crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _names_a_field(path: str) -> bool:
    node = {"properties": {"spec": _spec_schema()}}
    for part in path.split("."):
        if part.isdigit() and "items" in node:
            node = node["items"]
            continue
        if part not in node.get("properties", {}):
            return False
        node = node["properties"][part]
    return path != "spec"


@settings(FAST, max_examples=FAST.max_examples * 4)
@given(st.one_of(_docs(), DP_DOCS))
def test_every_error_names_its_field_and_valid_specs_pass_the_crd_schema(doc):
    """An invalid spec's every error names a field the CRD declares (its own, or the one a cross-field rule's CEL
    fieldPath names), never the bare spec; a valid spec, as given and as dumped, passes the CRD's OpenAPI schema
    (jsonschema, its x-kubernetes-* keys aside: int-or-string `parameters` is not drawn) and parses back to itself."""
    try:
        spec = parse_spec(doc)
    except InvalidWorkload as err:
        for path, message in err.errors:
            assert _names_a_field(path), (path, message)
        return
    # OpenAPI v3.0's boolean exclusiveMinimum/Maximum: JSON Schema draft 4's
    crd = jsonschema.Draft4Validator(_spec_schema())
    crd.validate(doc)
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    crd.validate(dumped)
    assert parse_spec(dumped) == spec


def test_sglang_dp_size_before_0_4_5_names_its_field_in_pydantic_and_cel():
    """Found by the property above: the check that SGLang before 0.4.5 forces --dp-size to the tensor size
    (spec.SGLANG_DP_ATTENTION_SIZE) raised a message of its own, which validation_errors could not map to a field:
    the error named the bare `spec`, and the CRD had no rule for it (kubectl accepted what the webhook refused). It
    is now a Rule: the error names spec.inference.dataParallelAttention, and its CEL rule's release pattern agrees with
    the pydantic side's release comparison (`older`) on every release form engineVersion's pattern allows."""
    from rackfit.spec import RULES
    from rackfit.spec.base import older
    from rackfit.spec.releases import SGLANG_DP_ATTENTION_SIZE
    with pytest.raises(InvalidWorkload) as err:
        parse_spec(_dp_doc("0.4.4", 8, 4, 1))
    assert err.value.errors == [("spec.inference.dataParallelAttention", RULES["LLMWorkloadSpec"][
        "data_parallel_attention_size"].message)]
    parse_spec(_dp_doc("0.4.4", 8, 8, 1))
    parse_spec(_dp_doc("0.4.5", 8, 4, 1))
    cel = RULES["LLMWorkloadSpec"]["data_parallel_attention_size"].cel
    pattern = re.search(r"matches\('([^']+)'\)", cel).group(1)
    for v in ("0.3", "0.3.5", "0.3.10", "0.4", "0.4.0", "0.4.4", "0.04.4", "0.4.04", "00.4.3", "0.4.5", "0.4.10",
              "0.4.40", "0.5", "0.5.8", "0.10.0", "1.0", "1.0.3", "10.4.3"):
        assert bool(re.fullmatch(pattern, v)) == older(v, SGLANG_DP_ATTENTION_SIZE), v
