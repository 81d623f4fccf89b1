"""accelerate's FSDP2 no_sync by release (training.accelerateVersion, estimator/accumulation.py): before 1.11.0
accelerate's `no_sync` is `getattr(model, "no_sync", contextlib.nullcontext)`, a null context for torch's FSDPModule,
so under gradient accumulation every micro-batch reduce-scatters into the sharded gradients (as torchtitan runs
FSDP2); from 1.11.0 (accelerate ec92b1af, PR 3762) it calls set_requires_gradient_sync(False) and every rank keeps
each parameter's unsharded 16-bit gradient between micro-batches."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.accumulation import accelerate_fsdp2_no_sync, no_sync_unsharded, runtime_accumulated_grads
from rackfit.estimator.result import Layout
from rackfit.spec import parse_spec


def _spec(data: int = 4, steps: int = 2, **training):
    tr = {"framework": "fsdp", "fsdpVersion": 2, "modelCode": "transformers", "method": "full",
          "masterWeights": "none", "optimizer": "adamw", "microBatchSize": 1, "sequenceLength": 1024,
          "activationCheckpointing": "full", "gradientAccumulationSteps": steps, **training}
    return parse_spec({"model": {"preset": "llama-3.2-1b"}, "workload": "training", "precision": "bf16",
                       "training": tr, "parallelism": {"data": data}})


def test_release_gates_the_unsharded_gradients():
    layout = Layout(data=4)
    current, old, first = (_spec().training, _spec(accelerateVersion="1.10.1").training,
                           _spec(accelerateVersion="1.11.0").training)
    assert accelerate_fsdp2_no_sync(current) and accelerate_fsdp2_no_sync(first)
    assert not accelerate_fsdp2_no_sync(old)
    assert no_sync_unsharded(current, layout, 1000) == 1000
    assert no_sync_unsharded(first, layout, 1000) == 1000
    assert no_sync_unsharded(old, layout, 1000) == 0
    # before 1.11.0: the torchtitan path, every kept (sharded) gradient allocated from the second micro-batch
    assert runtime_accumulated_grads(old, layout, 300, 100, 50, 1000) == (300, 0)
    assert runtime_accumulated_grads(current, layout, 300, 100, 50, 1000) == (1100, 50)


def test_old_release_estimates_less_by_about_the_unsharded_gradients():
    new, old = estimate(_spec()), estimate(_spec(accelerateVersion="1.10.0"))
    unsharded = 1_235_814_400 * 2   # Llama 3.2 1B's parameters, bf16 gradients whole on every rank
    assert old.total_bytes < new.total_bytes
    assert new.total_bytes - old.total_bytes > unsharded // 2
    # without accumulation the release changes nothing
    assert estimate(_spec(steps=1)).total_bytes == estimate(_spec(steps=1, accelerateVersion="1.10.0")).total_bytes


@pytest.mark.parametrize("training", [
    {"framework": "transformers", "accelerateVersion": "1.10.0"},
    {"framework": "fsdp", "fsdpVersion": 1, "accelerateVersion": "1.10.0"},
    {"framework": "fsdp", "fsdpVersion": 2, "accelerateVersion": "1.10.0"},          # torchtitan's model code
    {"framework": "fsdp", "fsdpVersion": 2, "modelCode": "transformers", "accelerateVersion": "1.x"},
])
def test_field_only_with_accelerates_fsdp2(training):
    tr = {"method": "full", "microBatchSize": 1, "sequenceLength": 512, **training}
    with pytest.raises((InvalidWorkload, ValueError)):
        parse_spec({"model": {"preset": "llama-3.2-1b"}, "workload": "training", "precision": "bf16",
                    "training": tr, "parallelism": {"data": 2}})
