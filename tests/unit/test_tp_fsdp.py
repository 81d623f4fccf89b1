"""Issue 22: tensor parallel under FSDP2 (torchtitan), audited from the runtimes' source against the public rows T12,
T24 and T40. Each test computes by hand, from the source's formula, what one TP rank holds and checks the estimator's
number (docs/accuracy.md, "Tensor parallel under FSDP2, audited")."""

from __future__ import annotations

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA70 = resolve(ModelSource(preset="llama-3.1-70b"))
QWEN14 = resolve(ModelSource(architecture=dict(numLayers=40, hiddenSize=5120, intermediateSize=17408,
                                               numAttentionHeads=40, numKeyValueHeads=8, headDim=128,
                                               vocabSize=151936, tieWordEmbeddings=False)))


def t12() -> Training:
    """T12: torchtitan 9dec370, Llama 3.1 70B, FSDP 32 x TP 8, local batch 16 x 8192, full AC, compiled blocks."""
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=16,
                    sequenceLength=8192, activationCheckpointing="full", compile=True, compileLoss=False,
                    expandableSegments=True)


def test_loss_parallel_backward_holds_dtensors_four_fp32_buffers_and_the_gathered_final_norm_output():
    """torch/distributed/tensor/parallel/loss.py, _nll_loss_and_log_softmax_backward: the saved fp32 log-softmax x,
    zeros_like(x), exp(x) and their sum (then the product with the gradient): 16 bytes a logit of the vocabulary
    t-th; the output projection (ColwiseParallel, input_layouts=Shard(1)) saves the all-gathered final-norm output,
    the whole sequence at 2 bytes a hidden element. T12: 131,072 tokens, 128,256 / 8 logits each."""
    act = runtime_activations(LLAMA70, t12(), Layout(data=32, tensor=8))
    tokens = 16 * 8192
    assert act.loss_backward == int(tokens * (128256 / 8) * 16) + tokens * 8192 * 2
    # _log_softmax: the 16-bit logits, the fp32 input, shifted and exp(shifted) at once: 14 bytes a logit
    assert act.loss_forward == int(tokens * (128256 / 8) * 14) + tokens * 8192 * 2


def test_full_checkpointing_keeps_each_blocks_sequence_split_input():
    """torchtitan's apply_tp: the block's input is Shard(1) (sequence parallel), which the checkpoint keeps: 2h / t
    bytes a token and block; without sequence parallel (transformers' plan) the whole sequence."""
    tokens = 16 * 8192
    sp = runtime_activations(LLAMA70, t12(), Layout(data=32, tensor=8))
    assert sp.kept == 80 * 2 * 8192 // 8 * tokens
    nosp = runtime_activations(LLAMA70, t12().model_copy(update={"sequence_parallel": False}),
                               Layout(data=32, tensor=8))
    assert nosp.kept == 80 * 2 * 8192 * tokens


def test_fsdp2_gathers_the_tensor_parallel_shard_of_two_blocks_and_the_output():
    """FSDP2 over a 2-D mesh shards each TP-local tensor over dp (fully_shard(mesh=dp_mesh) after apply_tp): the
    unit it all-gathers is the TP shard of a block, in bf16 (MixedPrecisionPolicy param_dtype), two blocks in flight
    (the current and the prefetched one) and the output projection's TP shard for the loss."""
    p = count_params(LLAMA70)
    layout = Layout(data=32, tensor=8)
    r = runtime_peak(LLAMA70, p, t12(), "bf16", layout, 0)
    t, d = 8, 32
    layer = (p.total - 2 * p.embedding) // 80 // t
    # and the all-gather copy-in stream's pool: the vocabulary matrix's TP shard beside the second block
    gathered = 2 * layer * 2 + p.embedding // t * 2 + p.embedding // t * 2
    sharded_masters = p.total // t * 4 // d
    assert r.weights == sharded_masters + gathered


def test_chunked_ce_loss_under_tensor_parallel_replicates_the_hidden_states():
    """torchtitan components/loss.py ChunkedCELoss (PR 2937, as on the may15/may19 branches): under TP the hidden
    states are redistributed to Replicate (an all-gather of the Shard(1) final-norm output: the whole sequence), cut
    into num_chunks contiguous 16-bit copies and a GradAccumulator of fp32 zeros_like(hidden); one chunk's logits
    (vocabulary / t, loss parallel) with DTensor's 16 backward bytes beside its 16-bit logits, the chunk's input
    gradient, and the output's unsharded fp32 gradient held across chunks (set_requires_gradient_sync(False)).
    T24's TP 2 x FSDP 4 row: local batch 4 x 4096, 8 chunks."""
    trn = Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=4,
                   sequenceLength=4096, activationCheckpointing="full", lossChunks=8, lossChunkBackward=True,
                   expandableSegments=True, adamwImplementation="fused")
    act = runtime_activations(QWEN14, trn, Layout(data=4, tensor=2))
    tokens, h, v, t, c = 4 * 4096, 5120, 151936, 2, 8
    replicated = tokens * h * 2  # the all-gathered hidden states (rackfit's final-norm output term)
    copies_and_accumulator = tokens * h * (2 + 4)
    chunk = tokens * v / t / c * (2 + 16) + tokens * h * 2 / c  # one chunk's logits and loss buffers, its h gradient
    output_grad = v * h / t * 4
    assert act.loss_forward == int(copies_and_accumulator + chunk + output_grad) + replicated


LLAMA8 = resolve(ModelSource(preset="llama-3.1-8b"))


def torchtune_tp(**training) -> Training:
    """torchtune's full_finetune_distributed at tensor_parallel_dim 2: local batch 8 x 8192, the configs'
    LinearCrossEntropyLoss (8 chunks), full activation checkpointing."""
    base = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=8,
                sequenceLength=8192, activationCheckpointing="full", lossChunks=8)
    return Training(**{**base, **training})


def test_torchtunes_chunked_loss_under_tensor_parallel_keeps_every_chunks_log_softmax():
    """LinearCrossEntropyLoss sums the chunks' losses and the recipe runs one backward: each chunk's fp32 log-softmax
    (4 bytes a logit of the vocabulary's t-th, loss parallel) stays saved; DTensor's other buffers exist for one chunk:
    the last chunk's forward (14 - 4 bytes) and the first chunk's backward (16 - 4)."""
    act = runtime_activations(LLAMA8, torchtune_tp(), Layout(data=4, tensor=2))
    tokens = 8 * 8192
    n = tokens * 128256 / 2
    final = tokens * 4096 * 2  # the hidden states the projection saves, all-gathered chunk by chunk
    assert act.loss_forward == int(n * (4 + 10 / 8)) + final
    assert act.loss_backward == int(n * (4 + 12 / 8)) + final


def test_torchtunes_chunked_loss_runs_eager_under_tensor_parallel_whatever_compile_says():
    """apply_compile_strategy skips compile with masking and tensor parallel; without tensor parallel the compiled
    loss keeps the 16-bit logits (2 bytes a logit)."""
    eager = runtime_activations(LLAMA8, torchtune_tp(), Layout(data=4, tensor=2))
    asked = runtime_activations(LLAMA8, torchtune_tp(compile=True), Layout(data=4, tensor=2))
    assert (asked.loss_forward, asked.loss_backward) == (eager.loss_forward, eager.loss_backward)
    single = runtime_activations(LLAMA8, torchtune_tp(compile=True), Layout(data=8))
    assert single.loss_forward == 8 * 8192 * 128256 * 2 + 8 * 8192 * 4096 * 2


def test_torchtunes_chunked_loss_without_loss_parallel_holds_the_whole_vocabulary():
    """torchtune between April and June 2025 (before PR 2782's patch_tp_plan): the output gathered to Replicate, torch's
    fused kernels on the whole vocabulary (10 and 12 bytes a logit, 4 of them the saved log-softmax)."""
    act = runtime_activations(LLAMA8, torchtune_tp(lossParallel=False), Layout(data=4, tensor=2))
    n = 8 * 8192 * 128256
    assert act.loss_backward == int(n * (4 + 8 / 8)) + 8 * 8192 * 4096 * 2
    assert act.loss_forward == int(n * (4 + 6 / 8)) + 8 * 8192 * 4096 * 2


def test_torchtitans_chunked_loss_is_not_torchtunes():
    """lossChunkBackward (torchtitan's ChunkedCELoss) runs each chunk's backward inside the loss: nothing per chunk is
    kept across chunks, whatever the tensor degree."""
    tt = runtime_activations(LLAMA8, torchtune_tp(), Layout(data=4, tensor=2))
    titan = runtime_activations(LLAMA8, torchtune_tp(lossChunkBackward=True), Layout(data=4, tensor=2))
    assert titan.loss_backward < tt.loss_backward / 3
