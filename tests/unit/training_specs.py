"""LLMWorkload specs shared by the FSDP1 tests (tests/unit runs with its own folder on sys.path)."""

from __future__ import annotations

from rackfit.spec import LLMWorkloadSpec, parse_spec


def llama2_7b_fsdp(seq: int, vocab: int = 32000, fsdp: int = 1, method: str = "lora", precision: str = "bf16"
                   ) -> LLMWorkloadSpec:
    """Llama-2 7B's shapes (bench T21/T22) with the vocabulary as given, untied (the root unit holds two vocabulary
    matrices), over two GPUs, batch 1, full checkpointing; LoRA/QLoRA at rank 64."""
    arch = dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32, numKeyValueHeads=32,
                headDim=128, vocabSize=vocab, tieWordEmbeddings=False)
    return parse_spec(dict(model=dict(preset="mistral-7b-v0.3", architecture=arch), workload="training",
                           precision=precision,
                           training=dict(framework="fsdp", fsdpVersion=fsdp, method=method,
                                         **(dict(loraRank=64) if method != "full" else {}), masterWeights="none",
                                         optimizer="adamw", microBatchSize=1,
                                         sequenceLength=seq, activationCheckpointing="full"),
                           parallelism=dict(data=2)))
