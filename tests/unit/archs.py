"""Model shapes the unit tests build from a few numbers."""

from __future__ import annotations

from rackfit.models import ModelArch, resolve
from rackfit.spec import ModelSource


def qwen(layers: int, hidden: int, inter: int, vocab: int) -> ModelArch:
    """A Qwen-style architecture (128-wide heads, no grouped KV, untied, attention bias)."""
    return resolve(ModelSource(architecture=dict(numLayers=layers, hiddenSize=hidden, intermediateSize=inter,
                                                 numAttentionHeads=hidden // 128, numKeyValueHeads=hidden // 128,
                                                 headDim=128, vocabSize=vocab, tieWordEmbeddings=False,
                                                 attentionBias=True)))
