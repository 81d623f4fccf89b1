"""What DeepSpeed ZeRO-3 keeps on the GPU, as read in its source (docs/accuracy.md, "What ZeRO-3 keeps on the GPU,
read again"): the gathered parameters' bound, the persistence and reuse rules, and what offload leaves behind.
Expected bytes are computed by hand from the source's formulas."""

from __future__ import annotations

from rackfit.estimator import training_peak
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import parse_spec

MAX_LIVE = 1_000_000_000   # stage3_max_live_parameters (ms-swift's zero3.json and DeepSpeed's default)
PREFETCH = 50_000_000      # stage3_prefetch_bucket_size, DeepSpeed's default (rackfit's zero.ZERO_PREFETCH_BUCKET)
SUB = 1_000_000_000        # sub_group_size

QWEN_7B = {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 11008, "numAttentionHeads": 32,
           "numKeyValueHeads": 32, "headDim": 128, "vocabSize": 151936, "tieWordEmbeddings": False,
           "attentionBias": True}


def _spec(training: dict, data: int, model: dict | None = None, precision: str = "bf16"):
    return parse_spec({"model": model or {"architecture": QWEN_7B}, "workload": "training", "precision": precision,
                       "training": {"framework": "deepspeed", "zeroStage": 3, "optimizer": "adamw",
                                    "microBatchSize": 1, "activationCheckpointing": "full", **training},
                       "parallelism": {"data": data}})


T174 = {"method": "full", "masterWeights": "fp32", "sequenceLength": 2048, "reduceBucketSize": 16_777_216,
        "overlapComm": True, "adamwImplementation": "fused", "gradientAccumulationSteps": 16}


def test_gathered_parameters_at_their_bound():
    # partitioned_param_coordinator.py: the current module's parameters are always fetched, the prefetch is capped by
    # max_live - n_available; rackfit counts the bound, max_live + prefetch 16-bit elements, beside the partition
    spec = _spec(T174, 4)
    n = count_params(resolve(spec.model)).total
    assert n > MAX_LIVE + PREFETCH
    r = training_peak(spec)
    assert r.phase == "loss backward"
    assert r.weights == n * 2 // 4 + (MAX_LIVE + PREFETCH) * 2


def test_reuse_distance_keeps_no_layer_at_the_turn():
    # __params_to_release: a module's parameters are kept when they recur within max_reuse_distance (1e9) elements of
    # the modules that follow in the trace. At the forward's last layer the trace goes on with the final norm, the
    # output projection's forward and then its backward: twice the output matrix. With a 152K vocabulary that alone
    # passes 1e9 on every model of these rows, so no decoder layer stays gathered into the backward
    for hidden in (3584, 4096, 5120, 8192):
        head = 151936 * hidden
        assert 2 * head >= MAX_LIVE


def test_persistent_parameters_are_megabytes():
    # parameter_offload.py mark_persistent_parameters: ds_numel <= stage3_param_persistence_threshold stays whole on
    # every rank; HF's "auto" is 10 x hidden. On Qwen-7B that is the norms and the fused qkv bias (3 x 4096), a
    # few MB whole, not modelled
    hidden, layers = 4096, 32
    threshold = 10 * hidden
    persistent = layers * (2 * hidden + 3 * hidden) + hidden
    assert 3 * hidden <= threshold
    assert persistent * 2 < 2 * 2**20


def test_fused_adam_from_the_ds_config_block():
    # ms-swift's zero3.json of March 2024 has an "optimizer" block (AdamW): DeepSpeed's engine builds FusedAdam
    # (engine.py _configure_basic_optimizer, torch_adam false), no temporary: the step's new segments are the first
    # sub-group's flat 16-bit copy and its fp32 upcast (zero.zero3_step_segments)
    spec = _spec(T174, 4)
    r = training_peak(spec)
    assert r.step_segments == SUB * 2 + SUB * 4
    foreach = training_peak(_spec({**T174, "adamwImplementation": "foreach"}, 4))
    assert foreach.step_segments == SUB * 2 + SUB * 4 + SUB * 4


def test_offload_keeps_only_the_reduce_bucket():
    # stage3.py: with offload_optimizer self.device is cpu, so grad_partitions_flat_buffer (the partitioned
    # gradients, pinned) and the fp32 sub-groups are host memory; initialize_optimizer_states' gradient buffers too.
    # The GPU keeps the IPG bucket (reduce_bucket_size 16-bit elements); offload_param takes the 16-bit partition
    spec = _spec({"method": "full", "masterWeights": "fp32", "sequenceLength": 128, "reduceBucketSize": 67_108_864,
                  "offloadOptimizer": True, "offloadParameters": True}, 8, model={"preset": "llama-3.1-70b"})
    r = training_peak(spec)
    assert r.states == 67_108_864 * 2
    n = count_params(resolve(spec.model)).total
    part = n // 8
    # host: fp32 master + two Adam states (12), the fp32 gradient partition (4), the 16-bit gradient partition (2)
    # and the 16-bit parameter partition (2)
    assert abs(r.host_offload - part * 20) <= 8 * 20
