"""training.checkpointWrapper: torch's checkpoint_wrapper inside each FSDP1 unit (Answer.AI's fsdp_qlora train.py,
apply_activation_checkpointing after the wrap) holds no frozen unit's detached input gradient to the end of the
backward, unlike transformers' reentrant gradient checkpointing around the unit (framework_activations.
fsdp1_held_input_grads)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training


def _recompute(arch, **training) -> int:
    tr = Training(**{"framework": "fsdp", "fsdpVersion": 1, "method": "qlora", "microBatchSize": 10,
                     "sequenceLength": 2048, "activationCheckpointing": "full", **training})
    return runtime_activations(arch, tr, Layout(data=2)).recompute


def test_checkpoint_wrapper_inside_the_units_holds_no_input_gradients():
    """Under transformers' checkpointing a layer's backward working set grows by one 16-bit hidden-sized input
    gradient a layer more; inside the units (checkpointWrapper) it does not grow with the depth."""
    arch = resolve(ModelSource(preset="llama-3.1-70b"))
    half = arch.model_copy(update={"num_layers": arch.num_layers // 2})
    tokens = 10 * 2048
    for method in ("qlora", "lora"):
        assert _recompute(arch, method=method) - _recompute(half, method=method) == \
            arch.num_layers // 2 * tokens * arch.hidden_size * 2
        assert _recompute(arch, method=method, checkpointWrapper=True) == \
            _recompute(half, method=method, checkpointWrapper=True)
    # the layer's own recompute is the same either way: only the held gradients go
    assert _recompute(arch) - _recompute(arch, checkpointWrapper=True) == \
        (arch.num_layers - 1) * tokens * arch.hidden_size * 2
    # a full fine-tune holds none either way
    assert _recompute(arch, method="full") == _recompute(arch, method="full", checkpointWrapper=True)


@pytest.mark.parametrize("training", [
    {"framework": "fsdp", "activationCheckpointing": "full"},                      # FSDP2
    {"framework": "fsdp", "fsdpVersion": 1, "activationCheckpointing": "none"},
    {"framework": "transformers", "activationCheckpointing": "full"},
    {"framework": "deepspeed", "activationCheckpointing": "full"},
])
def test_checkpoint_wrapper_only_with_fsdp1_full_checkpointing(training):
    with pytest.raises(ValidationError, match="checkpointWrapper"):
        Training(**training, checkpointWrapper=True)
