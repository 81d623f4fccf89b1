"""vLLM V0 before 0.6.4: the profile counted what PyTorch's caching allocator RESERVED, not the allocated peak.

The mechanism, read in vLLM's source by release (`vllm/worker/worker.py` `Worker.determine_num_available_blocks`):
- 0.2.0-0.2.4 took `torch.cuda.max_memory_allocated()` (the allocated peak); 0.2.5-0.3.2
  (`profile_num_available_blocks`) `total_gpu_memory - free_gpu_memory` after the profile run (the device's whole
  used memory), 0.3.3 on `init_gpu_memory - free_gpu_memory`: both count what the allocator reserved.
- 0.4.0-0.6.3 (read in the 0.4.0, 0.4.3, 0.5.1, 0.5.5, 0.6.0-0.6.3.post1 wheels): `init_device` stores
  `init_gpu_memory = torch.cuda.mem_get_info()[0]` (after `empty_cache`, before NCCL and the weights); the profile calls
  `torch.cuda.empty_cache()`, then `model_runner.profile_run()`, then `peak_memory = self.init_gpu_memory -
  free_gpu_memory` from `mem_get_info` with no `empty_cache` in between: every segment the allocator cudaMalloc'd during
  the profile is still reserved, so the "peak" is the reserved high-water mark. The `empty_cache` before the profile
  releases what weight loading left cached (no loading transient counts).
- 0.6.4 takes `torch.cuda.memory_stats()["allocated_bytes.all.peak"]` after `reset_peak_memory_stats` (plus the
  non-torch memory after an `empty_cache`); 0.7.0 moves that into `vllm/utils.py` `memory_profiling` (still the
  allocated peak, `MemorySnapshot.measure`). From 0.6.4 the allocated peak rackfit counts is what vLLM measured.

How the reserved high-water is derived (PyTorch `c10/cuda/CUDACachingAllocator.cpp`, its large pool): a request over
1 MiB (kSmallSize) is rounded to 512 B and served best-fit from the cached free blocks of the stream (the smallest
block that fits, `get_free_block`), the rest split off when over 1 MiB (`should_split`); with none that fits a new
segment is cudaMalloc'd (under 10 MiB, kMinLargeAlloc: a 20 MiB kLargeBuffer; else rounded up to 2 MiB, kRoundLarge)
and never given back without `empty_cache` (or an OOM retry); a freed block merges only with free neighbours in its
own segment (`try_merge_blocks`). `replay_reserved` replays that over the profile's large tensors in the order the
release's model code allocates and frees them (`v0_forward_events`), so a tensor larger than any free block left by
the ones before it (the first layer's MLP after its attention's temporaries) takes a new segment while those stay
reserved. Tensors of 1 MiB and less (the small pool, and index tensors such as the input ids or moe_align_block_size's
sorted ids, a few MiB at most) are left out.

Pure: no I/O.
"""

from __future__ import annotations

from rackfit.estimator.moe_serving import chunked_tokens
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Inference

ACT_BYTES = 2  # fp16/bf16 activations
FREE_MEMORY_PROFILE_FROM = (0, 2, 5)  # 0.2.0-0.2.4 took torch.cuda.max_memory_allocated()
FREE_MEMORY_PROFILE_UNTIL = (0, 6, 4)  # worker.py measures allocated_bytes.all.peak from 0.6.4
# ...and against which baseline (the same reading): 0.2.5-0.3.2 subtract the free memory from the TOTAL, so the whole
# device's use, the CUDA context included, is inside the "peak" and so inside util x total; from 0.3.3 `init_device`
# takes `init_gpu_memory` after `torch.cuda.set_device` and `empty_cache` (the bare context exists, cuBLAS's handles and
# NCCL's communicators not yet: those come with the profile run and init_worker_distributed_environment, after it), so
# the bare context is outside the budget and everything after it inside (context_outside_budget).
INIT_SNAPSHOT_FROM = (0, 3, 3)
REPLAYED_FROM = (0, 4, 1)  # the FlashAttention backend's sequence (flash_attn.py) read from 0.4.1
# 0.3.x hands the prompt to xformers (vllm/model_executor/layers/attention.py PagedAttention.forward, read in the 0.3.0
# and 0.3.3 wheels; both pin xformers 0.0.23.post1): memory_efficient_attention_forward dispatches to flash.FwOp on
# compute capability 8.0 and later (fmha/dispatch.py _dispatch_fw_priority_list: flash first, cutlass never preferred,
# the decoder op takes no causal block mask), which folds GQA's expanded k and v back to the kv heads as views
# (flash.py _convert_input_format with supports_mqa=True: no copy), allocates its output with query.new_empty
# (_flash_fwd) and flash-attn's varlen kernel its fp32 softmax_lse: the flash backend's sequence without the copy.
# Before Ampere xformers takes cutlass.FwOp (not read), and 0.4.0's attention backends were not read: no replay there.
XFORMERS_FLASH = ((0, 3, 0), (0, 4, 0))
FLASH_COPY_UNTIL = (0, 6, 2)  # 0.6.2 returns flash_attn_varlen_func's output as is (no empty_like + copy)
MLA_PADDED_HEAD = 256  # deepseek_v2.py before 0.7.0 pads q, k and v to 256 (docs/accuracy.md, MLA_PADDED_HEAD)
SMALL_SIZE = 1 << 20  # kSmallSize: the large pool serves requests above 1 MiB
MIN_BLOCK = 512  # kMinBlockSize: requests rounded up to 512 B
LARGE_BUFFER = 20 << 20  # kLargeBuffer: the segment of a request under kMinLargeAlloc
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge: larger segments rounded up to 2 MiB

Event = tuple[str, str, int]  # ("a", name, bytes) allocates, ("f", name, 0) frees


def free_memory_profile(inf: Inference | None) -> bool:
    """The release measures its profile as free memory lost (vLLM 0.2.5-0.6.3, worker.py)."""
    return (inf is not None and inf.engine == "vllm" and inf.vllm_before(FREE_MEMORY_PROFILE_UNTIL)
            and not inf.vllm_before(FREE_MEMORY_PROFILE_FROM))


def context_outside_budget(inf: Inference, context: int, bare_context: int) -> int | None:
    """For the free-memory releases (free_memory_profile), the part of the process's `context` (the CUDA context with
    cuBLAS's handles) that is outside util x total: none before INIT_SNAPSHOT_FROM (total - free counts it all), the
    bare context (`bare_context`, before cuBLAS) from it. None for other releases."""
    if not free_memory_profile(inf):
        return None
    return min(context, bare_context) if not inf.vllm_before(INIT_SNAPSHOT_FROM) else 0


def segment_bytes(size: int) -> int:
    """The segment cudaMalloc'd for a large-pool request of `size` (rounded) bytes (get_allocation_size)."""
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


def replay_reserved(events: list[Event]) -> tuple[int, int]:
    """(allocated peak, reserved peak) of the large pool over `events`: best-fit from cached free blocks, split when
    more than 1 MiB is left, a new segment when none fits, freed blocks merged with free neighbours of their segment,
    segments never released. Requests of 1 MiB or less are skipped (the small pool)."""
    segments: list[list[list]] = []  # each segment: ordered blocks [size, free]
    live: dict[str, tuple[int, list]] = {}
    allocated = reserved = peak_allocated = peak_reserved = 0
    for op, name, nbytes in events:
        if op == "a":
            size = -(-nbytes // MIN_BLOCK) * MIN_BLOCK
            if size <= SMALL_SIZE:
                continue
            best = None
            for si, seg in enumerate(segments):
                for bi, blk in enumerate(seg):
                    if blk[1] and blk[0] >= size and (best is None or blk[0] < best[2][0]):
                        best = (si, bi, blk)
            if best is None:
                seg_size = segment_bytes(size)
                segments.append([[seg_size, True]])
                reserved += seg_size
                peak_reserved = max(peak_reserved, reserved)
                best = (len(segments) - 1, 0, segments[-1][0])
            si, bi, blk = best
            if blk[0] - size > SMALL_SIZE:
                segments[si].insert(bi + 1, [blk[0] - size, True])
                blk[0] = size
            blk[1] = False
            live[name] = (si, blk)
            allocated += blk[0]
            peak_allocated = max(peak_allocated, allocated)
        elif name in live:
            si, blk = live.pop(name)
            blk[1] = True
            allocated -= blk[0]
            seg = segments[si]
            i = next(i for i, b in enumerate(seg) if b is blk)
            if i + 1 < len(seg) and seg[i + 1][1]:
                blk[0] += seg.pop(i + 1)[0]
            if i > 0 and seg[i - 1][1]:
                seg[i - 1][0] += seg.pop(i)[0]
    return peak_allocated, peak_reserved


def _attention_events(a: ModelArch, t: int, tokens: int, copy: bool = True) -> list[Event]:
    """One attention block's large tensors on a rank, as V0's model code and FlashAttention backend allocate them.
    Llama-style (`models/llama.py` LlamaAttention.forward: qkv_proj, split views, rotary in place, `self.attn`,
    o_proj); `attention/backends/flash_attn.py` FlashAttentionImpl.forward (0.4.1-0.6.1, `copy`):
    `output = torch.empty_like(query)`, then `out = flash_attn_varlen_func(...)` (with its fp32 softmax_lse, heads x
    tokens) copied into it; from 0.6.2 `prefill_output` is returned as it is (one tensor).
    DeepSeek-V2's MLA before 0.7.0 (`models/deepseek_v2.py` DeepseekV2Attention.forward, read in 0.5.1): q (q_proj, or
    q_a_proj -> q_a_layernorm -> q_b_proj), the latent (kv_a_proj_with_mqa), kv_a's contiguous copy and its norm,
    kv_b_proj's k_nope|v, `k = torch.empty_like(q)`, q, k and v padded to 256 a head, the attention's output at 256
    a head and its slice reshaped to v_head_dim, o_proj. q stays alive through its q_nope/q_pe views, kv through
    k_nope/v."""
    h, T, b = a.hidden_size, tokens, ACT_BYTES
    heads = max(1, a.num_attention_heads // t)
    ev: list[Event] = []
    if a.is_mla:
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            ev += [("a", "qa", T * a.q_lora_rank * b), ("a", "qan", T * a.q_lora_rank * b), ("f", "qa", 0),
                   ("a", "q", T * heads * qk * b), ("f", "qan", 0)]
        else:
            ev.append(("a", "q", T * heads * qk * b))
        ev += [("a", "lat", T * (a.kv_lora_rank + a.qk_rope_head_dim) * b), ("a", "kvc", T * a.kv_lora_rank * b),
               ("a", "kva", T * a.kv_lora_rank * b), ("f", "kvc", 0),
               ("a", "kv", T * heads * (a.qk_nope_head_dim + a.v_head_dim) * b),
               ("a", "k", T * heads * qk * b),
               ("a", "qp", T * heads * MLA_PADDED_HEAD * b), ("a", "kp", T * heads * MLA_PADDED_HEAD * b),
               ("f", "k", 0),
               ("a", "vp", T * heads * MLA_PADDED_HEAD * b),
               ("a", "ao", T * heads * MLA_PADDED_HEAD * b)] + _flash_copy(copy, T * heads * MLA_PADDED_HEAD * b) + [
               ("a", "lse", T * heads * 4), ("f", "lse", 0), ("f", "fo", 0),
               ("a", "ao2", T * heads * a.v_head_dim * b), ("f", "ao", 0),
               ("a", "o", T * h * b)]
        return ev + [("f", x, 0) for x in ("q", "lat", "kva", "kv", "qp", "kp", "vp", "ao2")]
    kv_heads = max(1, a.num_key_value_heads // t)
    q, kv = heads * a.head_dim, kv_heads * a.head_dim
    return ([("a", "qkv", T * (q + 2 * kv) * b), ("a", "ao", T * q * b)] + _flash_copy(copy, T * q * b)
            + [("a", "lse", T * heads * 4), ("f", "lse", 0), ("f", "fo", 0), ("a", "o", T * h * b),
               ("f", "qkv", 0), ("f", "ao", 0)])


def _flash_copy(copy: bool, nbytes: int) -> list[Event]:
    """flash_attn_varlen_func's own output, copied into the preallocated one (0.4.1-0.6.1)."""
    return [("a", "fo", nbytes)] if copy else []


def _mlp_events(width: int, h: int, tokens: int, prefix: str = "") -> list[Event]:
    """A gated MLP (`MergedColumnParallelLinear` gate_up_proj, SiluAndMul, down_proj): `width` its rank's share of the
    intermediate size; the down output is returned (named prefix + "dn")."""
    T, b = tokens, ACT_BYTES
    return [("a", prefix + "gu", T * 2 * width * b), ("a", prefix + "act", T * width * b), ("f", prefix + "gu", 0),
            ("a", prefix + "dn", T * h * b), ("f", prefix + "act", 0)]


def _moe_events(inf: Inference, a: ModelArch, t: int, tokens: int) -> list[Event]:
    """One MoE block on a rank, 0.5.x-0.6.3: the shared experts' MLP first (DeepSeek-V2: `DeepseekV2MoE.forward`), the
    router's logits (tokens x experts), fused_topk/grouped_topk's fp32 weights and int32 ids, then
    `fused_moe.py` fused_experts (read in 0.5.1, 0.5.3, 0.5.5, 0.6.0, 0.6.3): three separate caches of
    M = min(tokens, VLLM_FUSED_MOE_CHUNK_SIZE) rows (intermediate_cache1 M x top_k x N, cache2 M x top_k x N/2, cache3
    M x top_k x hidden; `inplace=True` writes the output over the input). DeepSeek-V2 (0.5.1) then multiplies by
    routed_scaling_factor and adds the shared output: two more tokens x hidden tensors."""
    h, T, b, k = a.hidden_size, tokens, ACT_BYTES, a.num_experts_per_token
    width = a.moe_intermediate_size // t
    m = chunked_tokens(inf, tokens)
    ev: list[Event] = []
    if a.num_shared_experts:
        ev += _mlp_events(a.num_shared_experts * a.moe_intermediate_size // t, h, T, "s")
    ev += [("a", "rl", T * a.num_experts * b), ("a", "tw", T * k * 4), ("a", "ti", T * k * 4),
           ("a", "c1", m * k * 2 * width * b), ("a", "c2", m * k * width * b), ("a", "c3", m * k * h * b),
           ("f", "c1", 0), ("f", "c2", 0), ("f", "c3", 0), ("f", "tw", 0), ("f", "ti", 0), ("f", "rl", 0)]
    if a.is_mla:
        ev += [("a", "scl", T * h * b), ("a", "sum", T * h * b), ("f", "scl", 0), ("f", "sdn", 0)]
        return ev + [("f", "hs", 0), ("r", "sum", 0)]
    return ev + ([("f", "sdn", 0)] if a.num_shared_experts else [])


def v0_forward_events(inf: Inference, a: ModelArch, layout: Layout, tokens: int,
                      pre_ampere: bool = False) -> list[Event] | None:
    """The profile forward's large tensors on one rank in V0's order: the embedding's output (the first residual),
    the first layer's input_layernorm copy (later layers' fused add-norm runs in place), then each block; the first
    dense layer and the first MoE layer and one more of each kind (the allocator's state repeats after that). None
    where the sequence is not modelled (ungated MLPs, hybrid/recurrent models, releases before 0.3.0 and 0.4.0, whose
    attention was not read, and 0.3.x on a `pre_ampere` GPU, XFORMERS_FLASH). Read in 0.5.1 (llama.py,
    deepseek_v2.py, flash_attn.py, fused_moe.py) and checked in 0.4.1-0.4.3, 0.5.3-0.5.5 and 0.6.0-0.6.3
    (flash_attn.py's output, fused_moe.py's three caches); 0.3.0 and 0.3.3's llama.py allocate in the same order."""
    first, until = XFORMERS_FLASH
    xformers = not inf.vllm_before(first) and inf.vllm_before(until)
    if not a.gated_mlp or a.linear_attention_layers or (inf.vllm_before(REPLAYED_FROM) and not xformers) or (
            xformers and pre_ampere):
        return None
    copy = not xformers and inf.vllm_before(FLASH_COPY_UNTIL)
    t, h, T = layout.tensor, a.hidden_size, tokens
    dense = a.num_layers - a.moe_layers
    kinds = ["dense"] * min(dense, 2) + ["moe"] * min(a.moe_layers, 2)
    ev: list[Event] = [("a", "emb", T * h * ACT_BYTES), ("a", "hs", T * h * ACT_BYTES)]
    for kind in kinds:
        ev += _attention_events(a, t, T, copy)
        # the layer's input (the first layer's normed copy; later ones the previous output, normed in place) is
        # freed when the attention returns; the attention's output is the MLP's input, alive through it
        ev += [("f", "hs", 0), ("r", "o", 0)]
        if kind == "dense":
            ev += _mlp_events(a.intermediate_size // t, h, T) + [("f", "hs", 0), ("r", "dn", 0)]
        else:
            ev += _moe_events(inf, a, t, T)
    return _resolve_renames(ev)


def _resolve_renames(events: list[Event]) -> list[Event]:
    """("r", name) makes the live tensor `name` the one called "hs" from there on."""
    out: list[Event] = []
    alias: dict[str, str] = {}
    n = 0
    for op, name, nbytes in events:
        if op == "r":
            alias["hs"] = alias.get(name, name)
            continue
        if op == "a":
            n += 1
            alias[name] = f"{name}#{n}"
            out.append(("a", alias[name], nbytes))
        else:
            out.append(("f", alias.pop(name, name), 0))
    return out


def v0_reserved_forward_bytes(inf: Inference, a: ModelArch, layout: Layout, tokens: int,
                              pre_ampere: bool = False) -> int | None:
    """The reserved high-water of the profile forward's large tensors on one rank in a release that measures free
    memory (free_memory_profile); None otherwise or where the sequence is not modelled."""
    if not free_memory_profile(inf):
        return None
    events = v0_forward_events(inf, a, layout, tokens, pre_ampere)
    if events is None:
        return None
    return replay_reserved(events)[1]
