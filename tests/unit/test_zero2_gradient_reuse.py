"""ZeRO-2's contiguous gradients, and stage 1's under overlap_comm, and the allocator slack (docs/accuracy.md,
"DeepSpeed's own memory handling and the allocator slack"): each gradient autograd makes is copied into the IPG buffer
and its block freed at once, so the next layer's gradients, the same shapes, are served by those blocks and strand no
slack (zero.zero2_gradient_reuse); the IPG buffers themselves and ZeRO-3's gathered parameters and gradients keep
their share."""

from archs import qwen

from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.zero import zero2_gradient_reuse, zero12_ipg_buffers
from rackfit.spec import Training


def test_only_the_layer_gradients_beside_the_ipg_buffers():
    ipg = zero12_ipg_buffers(500_000_000, False, 2)   # DeepSpeed's default bucket, one buffer without overlap_comm
    layer = 218_112_000 * 2                           # one Llama-3-8B layer's 16-bit gradients
    assert zero2_gradient_reuse(2, False, ipg + layer, ipg) == layer
    # stage 1 runs the same hooks under overlap_comm (two IPG buffers then), none without it (its gradients kept)
    assert zero2_gradient_reuse(1, True, 2 * ipg + layer, 2 * ipg) == layer
    assert zero2_gradient_reuse(1, False, ipg + layer, ipg) == 0
    # stage 3 (its gradients copied on the reduce stream under record_stream): none
    assert zero2_gradient_reuse(3, True, layer, 0) == 0


def _peak(stage, offload=False):
    a = qwen(32, 4096, 11008, 151936)   # T173/T174's 7B shape
    p = count_params(a)
    tr = Training(framework="deepspeed", zero_stage=stage, method="full", activation_checkpointing="full",
                  sequence_length=2048, offload_optimizer=offload)
    return runtime_peak(a, p, tr, "bf16", Layout(data=4), p.total * 2)


def test_runtime_peak_marks_the_zero2_layer_gradients_reused():
    # one layer: q, k, v, o 4 x 4,096^2, the q/k/v biases 3 x 4,096, the MLP 3 x 4,096 x 11,008, two norms, and the
    # final norm shared out over the 32 layers (fsdp.largest_layer_params)
    layer = 4 * 4096**2 + 3 * 4096 + 3 * 4096 * 11008 + 2 * 4096 + 4096 // 32
    for offload in (False, True):   # offload_optimizer forces contiguous gradients on: the same
        r = _peak(2, offload)
        assert r.reused == layer * 2 < r.backward_transient
    # ZeRO-3: its gathered parameters and gradients are not marked reused
    assert _peak(3).reused == 0
