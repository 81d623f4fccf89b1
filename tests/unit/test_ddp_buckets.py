"""DDP's gradient buckets beside param.grad under the transformers path (HF Trainer over accelerate, issue 22).

torch's Reducer (torch/csrc/distributed/c10d/reducer.cpp) allocates one flat bucket per bucket_cap_mb of the
trainable parameters when the model is wrapped and keeps it; without gradient_as_bucket_view (accelerate's
DistributedDataParallelKwargs default, and the Trainer never sets it) autograd's param.grad is a separate tensor
that mark_variable_ready_dense copies into the bucket and copy_bucket_to_grad copies back. From the backward's end
to the Trainer's zero_grad (set_to_none) the gradients are held twice. Expected bytes are worked out by hand from
Llama 3.2 1B's shapes: 16 layers x 2048, MLP 8192, 8 KV heads of 64, 128,256 tied embeddings."""

from __future__ import annotations

from rackfit.estimator import estimate
from rackfit.estimator.result import Layout
from rackfit.estimator.training import ddp_param_grads
from rackfit.spec import Training, parse_spec

# embeddings 128256 x 2048 + attention 16 x (2 x 2048^2 + 2 x 2048 x 512) + MLP 16 x 3 x 2048 x 8192 + norms
# 16 x 2 x 2048 + 2048
LLAMA_1B = 262_668_288 + 16 * (2 * 2048 * 2048 + 2 * 2048 * 512) + 16 * 3 * 2048 * 8192 + 16 * 2 * 2048 + 2048
# LoRA r16 on q, k, v, o: r x (in + out) each; k and v project 2048 -> 512
LORA_1B = 16 * 16 * ((2048 + 2048) + 2 * (2048 + 512) + (2048 + 2048))


def _spec(data: int, **training) -> dict:
    tr = {"framework": "transformers", "method": "full", "masterWeights": "none", "optimizer": "adamw",
          "microBatchSize": 1, "sequenceLength": 512, "activationCheckpointing": "full", **training}
    return parse_spec({"model": {"preset": "llama-3.2-1b"}, "workload": "training", "precision": "bf16",
                       "training": tr, "parallelism": {"data": data}})


def test_param_grads_only_under_ddp():
    hf = Training(framework="transformers")
    assert ddp_param_grads(hf, Layout(data=2), 1000) == 1000
    assert ddp_param_grads(hf, Layout(data=1), 1000) == 0  # no DDP on one GPU
    # ZeRO under accelerate: DeepSpeed's engine, no Reducer
    assert ddp_param_grads(Training(framework="transformers", zero_stage=2), Layout(data=2), 1000) == 0
    assert ddp_param_grads(Training(framework="fsdp"), Layout(data=2), 1000) == 0


def test_full_fine_tune_holds_gradients_twice():
    assert LLAMA_1B == 1_235_814_400
    one = estimate(_spec(1))
    ddp = estimate(_spec(2))
    grads = LLAMA_1B * 2  # pure bf16 gradients
    # one GPU: param.grad only, at the step
    assert one.peak_phase == "optimizer step"
    assert one.breakdown.gradients_bytes == grads
    # DDP: the buckets and param.grad; fused AdamW adds no temporary, so the backward's end (layer 0 recomputed)
    # is the peak
    assert ddp.peak_phase == "backward end"
    assert ddp.breakdown.gradients_bytes == 2 * grads
    assert ddp.breakdown.weights_bytes == one.breakdown.weights_bytes == grads
    assert ddp.breakdown.optimizer_states_bytes == one.breakdown.optimizer_states_bytes == 2 * LLAMA_1B * 2


def test_foreach_step_holds_both_and_its_temporary():
    # torch's foreach AdamW (adamw_torch before torch 2.8): one state-sized temporary, so the step is the peak
    ddp = estimate(_spec(2, adamwImplementation="foreach"))
    one = estimate(_spec(1, adamwImplementation="foreach"))
    assert ddp.peak_phase == one.peak_phase == "optimizer step"
    assert ddp.breakdown.gradients_bytes == 2 * LLAMA_1B * 2
    assert ddp.breakdown.optimizer_states_bytes == one.breakdown.optimizer_states_bytes


def test_lora_buckets_hold_only_the_adapters():
    assert LORA_1B == 3_407_872
    ddp = estimate(_spec(2, method="lora", loraRank=16, loraTargets=["q", "k", "v", "o"]))
    # the loss's backward stays the peak: buckets of the fp32 adapters (peft keeps them fp32), no param.grad yet
    assert ddp.peak_phase == "loss backward"
    assert ddp.breakdown.gradients_bytes == LORA_1B * 4


def test_zero_under_transformers_not_doubled():
    z2 = estimate(_spec(2, zeroStage=2))
    assert z2.breakdown.gradients_bytes <= LLAMA_1B * 2 // 2 + 1
