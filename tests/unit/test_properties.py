"""Properties of the estimator over generated workloads (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rackfit.estimator import Layout, estimate
from rackfit.estimator.comms import training_nccl_bytes
from rackfit.models import presets as preset_table
from rackfit.spec import parse_spec

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# preset -> (tensor sizes dividing both attention and KV heads, pipeline sizes dividing the layers)
MODELS = {
    "llama-3.2-1b": ([1, 2, 4, 8], [1, 2, 4, 8, 16]),
    "llama-3.1-8b": ([1, 2, 4, 8], [1, 2, 4, 8]),
    "llama-3.1-70b": ([1, 2, 4, 8], [1, 2, 4, 8]),
    "qwen2.5-7b": ([1, 2, 4], [1, 2, 4, 7]),
    "mixtral-8x7b": ([1, 2, 4, 8], [1, 2, 4, 8]),
    "gemma-2-27b": ([1, 2, 4, 8, 16], [1, 2]),
    "gpt-oss-120b": ([1, 2, 4, 8], [1, 2, 4]),
    "deepseek-v3": ([1, 2, 4, 8], [1]),
    "falcon-180b": ([1, 2, 4, 8], [1, 2, 4, 8]),
}
presets = st.sampled_from(sorted(MODELS))
inference_precisions = st.sampled_from(["fp32", "bf16", "fp16", "fp8", "int8", "int4", "nf4", "mxfp4", "nvfp4"])
pow2 = st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 32768, 131072])


DATA_DEGREES = st.sampled_from([1, 2, 4, 8])


@st.composite
def layouts(draw, preset, data=DATA_DEGREES):
    tensors, pipelines = MODELS[preset]
    return Layout(tensor=draw(st.sampled_from(tensors)), pipeline=draw(st.sampled_from(pipelines)), data=draw(data))


@st.composite
def inference_specs(draw):
    preset = draw(presets)
    doc = dict(model=dict(preset=preset), workload="inference", precision=draw(inference_precisions),
               inference=dict(contextLength=draw(st.integers(1, longest(preset))), concurrency=draw(st.integers(1, 64)),
                              kvCachePrecision=draw(st.sampled_from(["bf16", "fp16", "fp8"]))))
    return preset, doc


@st.composite
def training_specs(draw):
    preset = draw(presets)
    method = draw(st.sampled_from(["full", "lora", "qlora"]))
    precision = {"full": st.sampled_from(["fp32", "bf16", "fp16"]), "lora": st.sampled_from(["bf16", "fp8", "int8"]),
                 "qlora": st.sampled_from(["nf4", "int4"])}[method]
    training = dict(method=method, optimizer=draw(st.sampled_from(["adamw", "adamw8bit", "sgd", "adafactor"])),
                    microBatchSize=draw(st.integers(1, 16)), sequenceLength=draw(st.integers(1, 65_536)),
                    activationCheckpointing=draw(st.sampled_from(["none", "selective", "full"])),
                    zeroStage=draw(st.integers(0, 3)))
    if method == "full":
        training["masterWeights"] = draw(st.sampled_from(["fp32", "none"]))
    else:
        training["loraRank"] = draw(st.sampled_from([4, 16, 64]))
    return preset, dict(model=dict(preset=preset), workload="training", precision=draw(precision), training=training)


def longest(preset: str) -> int:
    """The model's maximum context: a longer inference contextLength is refused (test_context_limit.py)."""
    return preset_table()[preset]["maxPositionEmbeddings"]


any_specs = st.one_of(inference_specs(), training_specs())


def est(doc, layout):
    return estimate(parse_spec(doc), layout)


def nccl(doc, layout):
    return training_nccl_bytes(parse_spec(doc).training, layout)


def with_(doc, block, **changes):
    return {**doc, block: {**doc[block], **changes}}


@SETTINGS
@given(any_specs, st.data())
def test_breakdown_nonnegative_and_sums(case, data):
    preset, doc = case
    e = est(doc, data.draw(layouts(preset)))
    parts = e.breakdown.model_dump()
    assert all(v >= 0 for v in parts.values()), parts
    assert e.total_bytes == sum(parts.values()) == e.breakdown.total
    assert e.breakdown.weights_bytes > 0 and e.breakdown.overhead_bytes > 0


@SETTINGS
@given(inference_specs(), st.data(), st.integers(1, 100_000))
def test_monotone_in_context_length(case, data, more):
    preset, doc = case
    layout = data.draw(layouts(preset))
    context = min(doc["inference"]["contextLength"] + more, longest(preset))
    bigger = with_(doc, "inference", contextLength=context)
    assert est(bigger, layout).total_bytes >= est(doc, layout).total_bytes


@SETTINGS
@given(inference_specs(), st.data(), st.integers(1, 64))
def test_monotone_in_concurrency(case, data, more):
    preset, doc = case
    layout = data.draw(layouts(preset))
    bigger = with_(doc, "inference", concurrency=doc["inference"]["concurrency"] + more)
    assert est(bigger, layout).total_bytes >= est(doc, layout).total_bytes


@SETTINGS
@given(training_specs(), st.data(), st.integers(1, 16))
def test_monotone_in_micro_batch(case, data, more):
    preset, doc = case
    layout = data.draw(layouts(preset))
    bigger = with_(doc, "training", microBatchSize=doc["training"]["microBatchSize"] + more)
    assert est(bigger, layout).total_bytes >= est(doc, layout).total_bytes


@SETTINGS
@given(training_specs(), st.data(), st.integers(1, 65_536))
def test_monotone_in_sequence_length(case, data, more):
    preset, doc = case
    layout = data.draw(layouts(preset))
    bigger = with_(doc, "training", sequenceLength=doc["training"]["sequenceLength"] + more)
    assert est(bigger, layout).total_bytes >= est(doc, layout).total_bytes


def _double(layout: Layout, field: str, allowed: list[int]) -> Layout | None:
    bigger = getattr(layout, field) * 2
    return layout.model_copy(update={field: bigger}) if bigger in allowed else None


@SETTINGS
@given(any_specs, st.data())
def test_more_tensor_parallel_never_raises_per_gpu(case, data):
    preset, doc = case
    layout = data.draw(layouts(preset))  # includes going from one GPU to two (NCCL buffers appear)
    more = _double(layout, "tensor", MODELS[preset][0])
    if more is not None:
        assert est(doc, more).total_bytes <= est(doc, layout).total_bytes


@SETTINGS
@given(any_specs, st.data())
def test_more_pipeline_never_raises_per_gpu_once_multi_gpu(case, data):
    """From a multi-GPU layout on; the one-GPU -> two-GPU step is pinned by test_the_first_split_pays_for_nccl."""
    preset, doc = case
    layout = data.draw(layouts(preset, data=st.sampled_from([2, 4, 8])))
    more = _double(layout, "pipeline", MODELS[preset][1])
    if more is not None:
        assert est(doc, more).total_bytes <= est(doc, layout).total_bytes


@SETTINGS
@given(training_specs(), st.data(), st.sampled_from([2, 4, 8, 64]))
def test_higher_zero_stage_never_raises_per_gpu(case, data, dp):
    preset, doc = case
    layout = data.draw(layouts(preset, data=st.just(dp)))
    stage = doc["training"]["zeroStage"]
    if stage < 3:
        higher = with_(doc, "training", zeroStage=stage + 1)
        # DeepSpeed's ZeRO group is a clone of the world group: one NCCL communicator more than DDP (comms.py)
        more_comms = nccl(higher, layout) - nccl(doc, layout)
        assert est(higher, layout).total_bytes - more_comms <= est(doc, layout).total_bytes


QLORA_1B = dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="nf4",
                training=dict(method="qlora", optimizer="adamw", microBatchSize=1, sequenceLength=1,
                              activationCheckpointing="none", zeroStage=0, loraRank=4))


def test_the_first_split_pays_for_nccl():
    """More sharding never raises per-GPU memory once a job spans GPUs (properties above). The step
    from one GPU to two is the exception by design: NCCL's communicators and buffers (comms.py: the
    default group's, COMM_NVLINK) appear, and for a tiny model they outweigh what the split saves
    (found by hypothesis)."""
    from rackfit.estimator.comms import COMM_NVLINK
    one, two = est(QLORA_1B, Layout()), est(QLORA_1B, Layout(pipeline=2))
    assert two.breakdown.overhead_bytes - one.breakdown.overhead_bytes == COMM_NVLINK
    assert two.breakdown.weights_bytes < one.breakdown.weights_bytes
