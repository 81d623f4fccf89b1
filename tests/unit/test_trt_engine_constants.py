"""Two constants a trtllm-build engine holds beside its checkpoint's layers (issue 22; docs/accuracy.md "TensorRT-LLM
engine constants: the rotary table and a tied checkpoint's lm_head"): the float32 rotary table that
Attention.create_attention_const_params registers (max_position_embeddings x rotary_dim, plus rotary_dim / 2 inverse
frequencies) on every rank, and the separate lm_head that convert_checkpoint.py writes for a tied checkpoint
(--use_embedding_sharing off by default)."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.trtllm import engine_rotary_table_bytes, engine_tied_lm_head_bytes
from rackfit.models import ModelArch
from rackfit.spec import parse_spec

MiB = 1 << 20
H100 = GPU(model="H100", product="H100", memoryGB=81559 / 954, memoryMiB=81559, architecture="hopper")
A4000 = GPU(model="RTX A4000", product="RTX A4000", memoryGB=16376 / 954, memoryMiB=16376, architecture="ampere")


def arch(**kw) -> ModelArch:
    base = dict(name="x", num_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=128_256, max_position_embeddings=131_072)
    base.update(kw)
    return ModelArch(**base)


def test_rotary_table_by_hand():
    # Llama 3.1: 131,072 positions x 128 (cos, sin) floats x 4 bytes = 64 MiB, plus 64 inverse frequencies
    assert engine_rotary_table_bytes(arch()) == 131_072 * 128 * 4 + 64 * 4 == 64 * MiB + 256
    # Llama 3: 8,192 positions, 4 MiB
    assert engine_rotary_table_bytes(arch(max_position_embeddings=8192)) == 4 * MiB + 256
    # Qwen2.5-0.5B: 32,768 x 64 x 4 = 8 MiB
    assert engine_rotary_table_bytes(arch(head_dim=64, max_position_embeddings=32_768)) == 8 * MiB + 128
    assert engine_rotary_table_bytes(arch(max_position_embeddings=0)) == 0


def test_tied_lm_head_by_hand():
    tied = arch(vocab_size=151_936, hidden_size=896, tie_word_embeddings=True)
    # 151,936 x 896 x 2 bytes = 272,269,312 (259.7 MiB), split over the tensor ranks
    assert engine_tied_lm_head_bytes(tied, Layout(), 2) == 272_269_312
    assert engine_tied_lm_head_bytes(tied, Layout(tensor=2), 2) == 136_134_656
    assert engine_tied_lm_head_bytes(arch(), Layout(), 2) == 0  # untied: weight_bytes counts it already
    assert engine_tied_lm_head_bytes(tied, Layout(pipeline=2), 2) == 0  # each end's table counted already


def serving(model, tensor=1, backend="trt", precision="fp16", **inf):
    inference = dict(engine="tensorrt-llm", contextLength=8192, maxNumSeqs=8, **inf)
    if backend:
        inference["tensorrtLlmBackend"] = backend
    return parse_spec(dict(model=model, workload="inference", precision=precision,
                           parallelism=dict(tensor=tensor), inference=inference))


def test_rotary_table_on_every_rank_of_the_trt_engine_only():
    l31 = dict(preset="llama-3.1-8b")
    l3 = dict(preset="llama-3.1-8b", architecture=dict(maxPositionEmbeddings=8192))
    for t in (1, 2, 4):
        a = estimate(serving(l31, t), gpu=H100).breakdown.weights_bytes
        b = estimate(serving(l3, t), gpu=H100).breakdown.weights_bytes
        assert a - b == (131_072 - 8192) * 128 * 4  # not split over the tensor ranks
    # the PyTorch backend holds no such table (its weights do not change with the positions)
    a = estimate(serving(l31, backend=None, precision="bf16"), gpu=H100).breakdown.weights_bytes
    b = estimate(serving(l3, backend=None, precision="bf16"), gpu=H100).breakdown.weights_bytes
    assert a == b


def test_tied_checkpoint_holds_two_tables_in_the_engine():
    shape = dict(numLayers=24, hiddenSize=896, intermediateSize=4864, numAttentionHeads=14, numKeyValueHeads=2,
                 headDim=64, vocabSize=151_936, attentionBias=True, maxPositionEmbeddings=32_768)
    tied = estimate(serving(dict(architecture=dict(shape, tieWordEmbeddings=True)), precision="int8"), gpu=A4000)
    untied = estimate(serving(dict(architecture=shape), precision="int8"), gpu=A4000)
    # the engine holds the same bytes either way: the embedding and a 16-bit lm_head copy
    assert tied.breakdown.weights_bytes == untied.breakdown.weights_bytes
    # S190's "Loaded engine size: 875 MiB": int8 layers + two 16-bit tables + the 8 MiB rotary table
    assert abs(tied.breakdown.weights_bytes / MiB - 875) < 875 * 0.03
    # the PyTorch backend ties them (one table)
    pyt_tied = estimate(serving(dict(architecture=dict(shape, tieWordEmbeddings=True)), backend=None,
                                precision="int8"), gpu=A4000)
    pyt_untied = estimate(serving(dict(architecture=shape), backend=None, precision="int8"), gpu=A4000)
    assert pyt_untied.breakdown.weights_bytes - pyt_tied.breakdown.weights_bytes == 272_269_312
