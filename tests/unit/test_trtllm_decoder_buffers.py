"""TensorRT-LLM's TRT-engine backend: the decoder's sampling workspace (trtllm.engine_sampling_workspace_bytes), with
the bytes computed by hand from getTopKWorkspaceSize (cpp/tensorrt_llm/kernels/samplingTopKKernels.h)."""

from rackfit.estimator import trtllm

GiB = 1 << 30


def test_sampling_workspace_top_k_formula():
    # trtllm-bench README example (0.12.0.dev): 4,096 slots, a 32,000-token vocabulary at tensor 1, float32 logits.
    slots, vocab = 4096, 32000
    logits = 4 * slots * vocab                 # tempLogProbsBufSize: 524,288,000 (a multiple of 256)
    ids = 4 * slots * 1024 * 8                 # topKTmpIdsBufSize: 134,217,728
    vals = 4 * slots * 1024 * 8                # topKTmpValBufSize in float
    assert trtllm.engine_sampling_workspace_bytes(vocab, 1, slots) == logits + ids + vals == 792_723_456


def test_sampling_workspace_pads_vocab_and_aligns():
    # vocab 151,936 at tensor 3 pads to 151,938; 7 slots: 4 x 7 x 151,938 = 4,254,264 -> 4,254,464 (256-aligned)
    assert trtllm.engine_sampling_workspace_bytes(151_936, 3, 7) == 4_254_464 + 2 * 4 * 7 * 1024 * 8


def test_engine_backend_counts_the_sampling_workspace():
    # engines.py's TRT branch adds the workspace to the decoder's state: at 2,048 slots and Llama 3's 128,256-token
    # vocabulary it is 4 x 2,048 x 128,256 + 2 x 4 x 2,048 x 8,192 bytes = 1.10 GiB more off the cache
    ws = trtllm.engine_sampling_workspace_bytes(128_256, 1, 2048)
    assert ws == 4 * 2048 * 128_256 + 2 * 4 * 2048 * 1024 * 8
    assert round(ws / GiB, 2) == 1.10


def test_readme_example_decoder_still_below_log():
    # "Allocated 4.35 GB GPU memory for decoder" (GB = GiB in MemoryCounters::bytesToString): what is read in the
    # source and counted is 2.45 GiB; the rest is not placed (docs/accuracy.md), so rackfit stays below the log.
    counted = trtllm.engine_decoder_bytes(32000, 1, 4096, 4098) + trtllm.engine_sampling_workspace_bytes(32000, 1, 4096)
    assert round(counted / GiB, 2) == 2.45
    assert counted < 4.35 * GiB
