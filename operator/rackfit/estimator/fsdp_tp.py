"""Tensor parallel under FSDP2: what a tensor rank holds in a block's backward beyond the per-token count that
framework_activations divides by the tensor degree. fsdp.fsdp2_backward_inputs adds it to the block moments.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from rackfit.estimator.activations import ACT_BYTES
from rackfit.models import ModelArch
from rackfit.spec import Training


def whole_sequence_gradient_excess(a: ModelArch, tr: Training, t: int) -> int:
    """Bytes a tensor rank holds at the start of a block's backward beyond what the per-token count gives it
    (framework fsdp, `tensor` t > 1): the incoming gradient of the block's last rowwise output, whole-sequence on
    every rank, less the t-th of it the count already has.

    torchtitan's plan (models/llama3/infra/parallelize.py apply_tp; torchtune's BASE_LLAMA_TP_TRAINING_PLAN, the
    same) makes w2 (and wo) `RowwiseParallel(output_layouts=Shard(1))`: the output is a Partial DTensor
    reduce-scattered to Shard(1) by `redistribute` (torch/distributed/tensor/parallel/style.py,
    RowwiseParallel._prepare_output_fn). In the backward, `Redistribute.backward`
    (torch/distributed/tensor/_redistribute.py; _tensor/redistribute.py in older releases, the same rule) turns a
    Partial source placement into Replicate ("for backward shard -> partial, we just do shard -> replicate"), so
    the Shard(1) gradient is all-gathered: a [batch, sequence,
    hidden] 16-bit tensor on every rank, alive through w2's backward while every tensor the block saved (or its
    recompute restored, under full checkpointing) still is. Without sequence parallel (`sequenceParallel: false`)
    the output is Replicate and its gradient arrives whole as well. The per-token count
    (activations._layer_bytes_per_token, the working set the H200 rows calibrate at t = 1) divides the block by t,
    so it has a t-th of this tensor: (1 - 1/t) of it is added. The rank's later gradients (w1/w3's input gradients,
    Partial and whole too) come after the block's MLP tensors are freed, and are not counted.
    Llama 3.1 70B at local batch 16 x 8192, TP 8 (T12): 131,072 x 8,192 x 2 x 7/8 = 1.75 GiB."""
    if tr.framework != "fsdp" or t <= 1:
        return 0
    tokens = tr.micro_batch_size * tr.sequence_length
    whole = tokens * a.hidden_size * ACT_BYTES
    return whole - whole // t
