"""SGLang's Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5): the request states paid out of the pool before the tokens,
which count the full-attention layers only (estimator/sglang.py, read in the 0.5.3, 0.5.4 and 0.5.10 wheels)."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.sglang import (
    MAMBA_CACHE_SIZE_DEFAULT,
    gdn_running_cap,
    gdn_state_bytes,
    gdn_states,
    kv_layers,
)
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource, parse_spec
from rackfit.units import GiB

RTX4090 = GPU(model="RTX 4090", product="RTX 4090", memoryGB=24, memoryMiB=24564, architecture="ada")
# Qwen3.5-9B (S1094): 32 layers, every 4th full attention, 24 Gated DeltaNet layers of 16 key / 32 value heads of 128
QWEN35_9B = dict(numLayers=32, hiddenSize=4096, intermediateSize=12288, numAttentionHeads=16, numKeyValueHeads=4,
                 headDim=256, vocabSize=248320, qkNorm=True, maxPositionEmbeddings=262144, linearAttentionLayers=24,
                 linearNumKeyHeads=16, linearNumValueHeads=32, linearKeyHeadDim=128, linearValueHeadDim=128,
                 linearConvKernelDim=4, linearStateFloat32=True, attentionOutputGate=True,
                 visionParameters=456010480, visionHiddenSize=1152, visionIntermediateSize=4304,
                 visionPatchesPerItem=65536, visionTokensPerItem=16384)


def _inf(version: str, **kw) -> Inference:
    return Inference(engine="sglang", engineVersion=version, **kw)


def _qwen35_9b():
    return resolve(ModelSource(architecture=QWEN35_9B))


def test_the_token_pool_holds_the_full_attention_layers_only():
    assert kv_layers(resolve(ModelSource(preset="qwen3-next-80b-a3b")), 48) == 12
    assert kv_layers(_qwen35_9b(), 32) == 8
    assert kv_layers(resolve(ModelSource(preset="llama-3.1-8b")), 32) == 32
    # a linear hybrid without the full layers' output gate (a Mamba-2 hybrid) is not a Gated DeltaNet one
    assert kv_layers(_qwen35_9b().model_copy(update={"attention_output_gate": False}), 32) == 32


def test_a_request_state_as_s1094_logs_it():
    """S1094 (tensor 2): 24 layers x (a bf16 conv state of (2 x 8 x 128 + 16 x 128) x 3 and a float32 temporal state of
    16 x 128 x 128); its log's 187 slots (186 states and the pool's spare) are 0.10 GB of conv and 4.38 GB of ssm."""
    per_request = gdn_state_bytes(_qwen35_9b(), 2, 32)
    assert per_request == 24 * ((2 * 8 * 128 + 16 * 128) * 3 * 2 + 16 * 128 * 128 * 4)
    assert round(187 * 24 * 16 * 128 * 128 * 4 / GiB, 2) == 4.38
    # the temporal state is float32 in SGLang whatever linearStateFloat32 says (mamba2_state_dtype's default)
    bf16_config = _qwen35_9b().model_copy(update={"linear_state_float32": False})
    assert gdn_state_bytes(bf16_config, 2, 32) == per_request


def test_states_by_release():
    per_request = 25_755_648
    rest = int(9.494 * GiB)  # S1094: 14.08 GB free after the weights less 0.2 x 22.93 GB
    # from 0.5.4 the rest splits 0.9 : 1 between the states and the tokens
    assert gdn_states(_inf("0.5.10"), rest, per_request) == int(rest * 0.9 / 1.9) // per_request == 187
    assert gdn_states(_inf("0.5.10"), 0, per_request) == 0
    # through 0.5.3: --max-running-requests or 512, radix cache off
    assert gdn_states(_inf("0.5.3"), rest, per_request) == MAMBA_CACHE_SIZE_DEFAULT
    assert gdn_states(_inf("0.5.3", maxNumSeqs=64), rest, per_request) == 64
    # with radix cache a third of the states run at once: S1094's 186 states, max_running_requests=62
    assert gdn_running_cap(_inf("0.5.10"), 186) == 62
    assert gdn_running_cap(_inf("0.5.3"), 186) == 186


def test_s1094_pool_in_tokens():
    """S1094: Qwen3.5-9B on 2 x RTX 4090 at --mem-fraction-static 0.8, 262,144 tokens (SGLang of 2026-04-14): "KV Cache
    is allocated. #tokens: 327310, K size: 2.50 GB, V size: 2.50 GB". Every layer and no states gave 155,835."""
    spec = parse_spec(dict(model=dict(architecture=QWEN35_9B), workload="inference", parallelism=dict(tensor=2),
                           inference=dict(engine="sglang", contextLength=262144, engineVersion="0.5.10",
                                          gpuMemoryUtilization=0.8)))
    est = estimate(spec, gpu=RTX4090)
    assert abs(est.kv_cache_tokens - 327_310) / 327_310 < 0.02
    assert abs(est.kv_cache_pool_bytes / GiB - 5.00) < 0.1
