"""Pre-quantized checkpoints: what a config.json's `quantization_config` stores, module by module.

`checkpoint_quantization(arch, config)` reads the config the way the loaders do and returns a
`Quantization`: bytes per parameter, scales and zero points included, for each module class
(attention projections, dense MLP, routed experts, shared experts, router) of each decoder layer,
and for the embedding and lm_head. `uniform(precision, layers)` is the same object for a spec's
`precision` applied to every linear layer (what rackfit assumed before it read checkpoints).
estimator/weights.py multiplies these by the parameter counts and shards them.

Mechanisms, each as the runtime implements it (vLLM `model_executor/layers/quantization/`, Hugging Face
transformers `quantizers/` and `integrations/`, compressed-tensors, ModelOpt):

- Which modules a method converts. Every decoder Linear (attention, MLP, experts, shared experts)
  for fp8, fbgemm_fp8, compressed-tensors, modelopt, awq, gptq and bitsandbytes; MoE routers stay in
  the model dtype (vLLM builds them with `quant_config=None`, DeepSeek's `MoEGate` is no Linear);
  mxfp4 converts only the routed experts (vLLM `Mxfp4Config` gives Linear layers
  `UnquantizedLinearMethod`; gpt-oss's config excludes self_attn, router, embed_tokens, lm_head). The
  embedding is never quantized, the lm_head only by GPTQ with `lm_head: true` (vLLM quantizes
  `ParallelLMHead` only there; the other methods quantize `LinearBase` layers alone).
- Which modules a config leaves alone: `modules_to_not_convert` (fp8, fbgemm_fp8, awq, mxfp4,
  transformers' quantizers), `ignored_layers` (vLLM `Fp8Config`), `ignore` (compressed-tensors, `re:`
  prefix = regex), `exclude_modules` (modelopt, globs), `llm_int8_skip_modules` (bitsandbytes), GPTQ's
  `dynamic` `-:` regexes and `modules_in_block_to_quantize`. Names are matched as the loaders do:
  exact or a parent module, a suffix, a regex from the start (transformers' `should_convert_module`),
  a glob (modelopt), a substring (vLLM's `is_layer_skipped_awq`).
- What a converted matrix stores, per (out, in) weight:
  fbgemm_fp8: fp8 + one fp32 scale per output row (vLLM `FBGEMMFp8LinearMethod`, ChannelQuantScaleParameter);
  fp8: fp8 + fp32 `weight_scale_inv` per `weight_block_size` block (DeepSeek-V3, Qwen3-FP8: 128x128), else one
  per-tensor scale (vLLM `Fp8LinearMethod`);
  compressed-tensors: `num_bits` values (int4 packed 8 per int32), a scale per tensor, channel, `group_size`
  group, block (`block_structure`) or 16-value tensor_group (NVFP4: fp8 scales); zero points when
  `symmetric` is false;
  modelopt: FP8 with per-tensor scales, NVFP4 with an fp8 scale per 16 values (`group_size`);
  awq: 4-bit packed + fp16 scale and packed 4-bit zero per `group_size` inputs of each output
  (vLLM `AWQLinearMethod`: qweight, qzeros, scales);
  gptq: `bits` packed + fp16 scale and packed zero per group (qzeros are stored even when `sym`);
  `group_size: -1` is one group per row (vLLM `GPTQLinearMethod`);
  bitsandbytes: 4-bit: 0.5 B + one absmax per 64 values, fp32, or with `bnb_4bit_use_double_quant` 8-bit plus one
  fp32 per 256 blocks (bitsandbytes `Params4bit`, blocksize 64), which vLLM's loader dequantizes back to fp32 per 64
  from 0.10.0 (`Quantization.vllm`, `NF4_FP32_ABSMAX`); 8-bit: int8 + fp32 `SCB` per row (`Int8Params`);
  mxfp4: 4-bit values + one E8M0 (1 B) scale per 32 (OCP MX; gpt-oss `*_blocks` / `*_scales` tensors).
- What a runtime holds instead: an MXFP4 checkpoint's experts dequantized to torch_dtype at load where the runtime
  runs no MXFP4 kernel or trains (`dequantized_experts`; when, in estimator/weights.py `mxfp4_dequantized`).
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "float": 4.0, "half": 2.0}
CLASSES = ("attention", "mlp", "experts", "shared", "router")


class Format(NamedTuple):
    """How one quantized matrix is stored: `value_bytes` per weight plus `scale_bytes` per block of
    `rows` x `cols` weights (0 = the whole dimension: (1, 0) is one scale per output row, (0, 0) one per
    matrix, (1, 128) a group of 128 inputs, (128, 128) a DeepSeek-style block)."""

    name: str
    value_bytes: float
    scale_bytes: float = 0.0
    rows: int = 0
    cols: int = 0

    def matrix_bytes(self, out: int, inp: int) -> float:
        blocks = math.ceil(out / (self.rows or out)) * math.ceil(inp / (self.cols or inp))
        return out * inp * self.value_bytes + blocks * self.scale_bytes


# The formats of a spec's `precision` (estimator/weights.py BYTES_PER_PARAM is derived from these).
PRECISION_FORMATS: dict[str, Format] = {
    "fp32": Format("fp32", 4.0),
    "bf16": Format("bf16", 2.0),
    "fp16": Format("fp16", 2.0),
    "fp8": Format("fp8", 1.0, 4.0, 128, 128),           # fp32 scale per 128x128 block (DeepSeek-style)
    "int8": Format("int8", 1.0, 2.0, 1, 4096),          # 16-bit scale per output channel of ~4k inputs
    "int4": Format("int4", 0.5, 2.5, 1, 128),           # fp16 scale + 4-bit zero per group of 128 (AWQ/GPTQ)
    "nf4": Format("nf4", 0.5, 1 + 4 / 256, 1, 64),      # 8-bit absmax per 64 + fp32 per 256 blocks (double quant)
    "mxfp4": Format("mxfp4", 0.5, 1.0, 1, 32),          # E8M0 shared exponent per 32
    "nvfp4": Format("nvfp4", 0.5, 1.0, 1, 16),          # fp8 scale per 16
}


class LayerBytes(NamedTuple):
    """Bytes per parameter of each module class in one decoder layer."""

    attention: float
    mlp: float
    experts: float
    shared: float
    router: float


class Quantization(BaseModel):
    """Bytes per parameter, module by module, of the weights as stored."""

    model_config = ConfigDict(frozen=True)

    method: str                  # quant_method as the config names it, or the spec's precision
    dtype_bytes: float = 2.0     # modules left unquantized, and norms: torch_dtype
    layers: tuple[LayerBytes, ...]
    embedding: float
    lm_head: float
    checkpoint: bool = False     # from a checkpoint's quantization_config (else the spec's precision)
    summary: str = ""            # what was read, for the Estimate's note
    # fp8 `weight_block_size` (block_n, block_k) of a block-scaled checkpoint: the engines refuse a tensor-parallel
    # shard of a quantized matrix that is not a whole number of blocks (estimator/engines.py `fp8_block_refusal`)
    weight_block: tuple[int, int] | None = None
    # what vLLM holds instead, where its loader changes what the checkpoint stores: a bitsandbytes 4-bit checkpoint
    # with double quantization has its nested absmax dequantized to fp32 per 64 values at load
    # (model_loader/bitsandbytes_loader.py, dequantize_dq: "This comes at the cost of increased memory usage")
    vllm: Quantization | None = None

    # `layers` as (count, bytes) runs of alike consecutive layers, filled on construction (weights.py walks these)
    runs: tuple[tuple[int, LayerBytes], ...] = Field(default=(), exclude=True, repr=False)

    @model_validator(mode="after")
    def _runs(self) -> Quantization:
        out: list[tuple[int, LayerBytes]] = []
        for lb in self.layers:
            if out and out[-1][1] == lb:
                out[-1] = (out[-1][0] + 1, lb)
            else:
                out.append((1, lb))
        object.__setattr__(self, "runs", tuple(out))
        return self

    def note(self, precision: str) -> str:
        return (f"weights as the checkpoint stores them ({self.summary}); spec.precision {precision} is not "
                f"applied to them: the quantization_config decides each module, unquantized ones keep torch_dtype")


# bitsandbytes 4-bit with its absmax in fp32, one per 64 values: a checkpoint without double quantization, and what
# vLLM holds of a double-quantized one from 0.10.0 (`_dequantize_dq`, estimator/weights.py BNB_DEQUANTIZED_ABSMAX_FROM),
# the in-flight path included: vLLM's `_unquantized_generator` quantizes each rank's shard with
# `quantize_4bit(compress_statistics=True, quant_type="nf4")` and dequantizes the nested absmax when it binds it.
# SGLang's loader (srt/model_loader/loader.py, 0.5.x) does the same quantize_4bit and keeps the nesting: `nf4`.
NF4_FP32_ABSMAX = Format("nf4", 0.5, 4.0, 1, 64)


def uniform(precision: str, num_layers: int, fmt: Format | None = None) -> Quantization:
    """A spec's `precision` on every decoder linear layer; embeddings, lm_head and routers 16-bit (fp32
    models: everything fp32). MXFP4 compresses only routed experts, as gpt-oss does. `fmt` stores the quantized
    layers in another format than the precision's own (NF4_FP32_ABSMAX under vLLM)."""
    u = 4.0 if precision == "fp32" else 2.0
    f = fmt or PRECISION_FORMATS[precision]
    q = f.value_bytes + (f.scale_bytes / (f.rows * f.cols) if f.rows and f.cols else 0.0)
    dense = u if precision == "mxfp4" else q
    layer = LayerBytes(attention=dense, mlp=dense, experts=q, shared=dense, router=u)
    return Quantization(method=precision, dtype_bytes=u, layers=(layer,) * num_layers, embedding=u, lm_head=u)


def dequantized_experts(q: Quantization, how: str) -> Quantization:
    """`q` with its routed experts held in torch_dtype (`dtype_bytes`), the rest as `q` stores it: what a runtime
    keeps once it has dequantized an MXFP4 checkpoint's experts at load (estimator/weights.py `mxfp4_dequantized`
    says when: transformers' `Mxfp4Config(dequantize=True)` for training, SGLang's `upcast_from_mxfp` where no
    MXFP4 MoE kernel runs). `how` is appended to the summary."""
    layers = tuple(lb._replace(experts=q.dtype_bytes) for lb in q.layers)
    summary = f"{q.summary}; {how}" if q.summary else how
    return Quantization(method=q.method, dtype_bytes=q.dtype_bytes, layers=layers, embedding=q.embedding,
                        lm_head=q.lm_head, checkpoint=q.checkpoint, summary=summary, weight_block=q.weight_block)


# --- module names --------------------------------------------------------------------------------------

class Projection(NamedTuple):
    names: tuple[str, ...]   # the module's name as it may appear in a checkpoint (aliases across families)
    out: int
    inp: int


def projections(a: Any, layer: int) -> dict[str, list[Projection]]:
    """Each module class of decoder layer `layer` as its matrices, named as Hugging Face checkpoints name them
    (Llama/Qwen/DeepSeek `self_attn.q_proj`, `mlp.experts.0.gate_proj`; Mixtral `block_sparse_moe.experts.0.w1`;
    gpt-oss `mlp.router`). `a` is a ModelArch."""
    h, p = a.hidden_size, f"model.layers.{layer}."

    def names(*suffixes: str) -> tuple[str, ...]:
        return tuple(p + s for s in suffixes)

    heads = a.num_attention_heads
    if a.is_mla:
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = [Projection(names("self_attn.q_a_proj"), a.q_lora_rank, h),
             Projection(names("self_attn.q_b_proj"), heads * qk, a.q_lora_rank)] if a.q_lora_rank \
            else [Projection(names("self_attn.q_proj"), heads * qk, h)]
        kv_b = heads * (a.qk_nope_head_dim + a.v_head_dim)
        attn = q + [Projection(names("self_attn.kv_a_proj_with_mqa"), a.kv_lora_rank + a.qk_rope_head_dim, h),
                    Projection(names("self_attn.kv_b_proj"), kv_b, a.kv_lora_rank),
                    Projection(names("self_attn.o_proj"), h, heads * a.v_head_dim)]
    elif linear_attention_layer(a, layer):
        attn = linear_attention_projections(a, names)
    else:
        qd, kvd = a.query_width, a.kv_width
        # Qwen3-Next/Qwen3.5's output gate doubles q_proj (vLLM Qwen3NextAttention: q and gate in one projection)
        qo = 2 * qd if getattr(a, "attention_output_gate", False) else qd
        attn = [Projection(names("self_attn.q_proj"), qo, h), Projection(names("self_attn.k_proj"), kvd, h),
                Projection(names("self_attn.v_proj"), kvd, h), Projection(names("self_attn.o_proj"), h, qd)]

    def mlp(prefixes: tuple[str, ...], inter: int, mixtral: bool = False) -> list[Projection]:
        def proj(name: str, w: str, out: int, inp: int) -> Projection:
            aliases = ("block_sparse_moe.experts.0." + w,) if mixtral else ()
            return Projection(names(*(f + name for f in prefixes), *aliases), out, inp)
        gate = [proj("gate_proj", "w1", inter, h)] if a.gated_mlp else []
        return gate + [proj("up_proj", "w3", inter, h), proj("down_proj", "w2", h, inter)]

    out: dict[str, list[Projection]] = {"attention": attn}
    if layer < a.num_layers - a.moe_layers:
        out["mlp"] = mlp(("mlp.",), a.intermediate_size)
    else:
        out["experts"] = mlp(("mlp.experts.0.",), a.moe_intermediate_size, mixtral=True)
        if a.num_shared_experts:
            out["shared"] = mlp(("mlp.shared_experts.", "mlp.shared_expert."),
                                a.moe_intermediate_size * a.num_shared_experts)
        out["router"] = [Projection(names("mlp.gate", "mlp.router", "block_sparse_moe.gate"), a.num_experts, h)]
    return out


def linear_attention_layer(a: Any, layer: int) -> bool:
    """Whether decoder layer `layer` of a hybrid model is a linear-attention (Gated DeltaNet) layer: Qwen3-Next and
    Qwen3.5/3.6 put full attention on every `full_attention_interval`-th layer (config.json layer_types:
    linear, linear, linear, full, ...), the interval being numLayers over the full layers."""
    linear = getattr(a, "linear_attention_layers", 0) or 0
    if not linear:
        return False
    interval = a.num_layers // max(1, a.num_layers - linear)
    return (layer + 1) % interval != 0


def linear_attention_projections(a: Any, names: Any) -> list[Projection]:
    """A Gated DeltaNet layer's matrices as Hugging Face checkpoints name them: Qwen3.5/3.6's in_proj_qkv, in_proj_z,
    in_proj_b, in_proj_a and out_proj (Qwen3-Next fuses them as in_proj_qkvz and in_proj_ba; vLLM qwen3_5.py
    `packed_modules_mapping` maps both onto its fused in_proj_qkvz / in_proj_ba). The conv1d, A_log, dt_bias and
    norm are no Linear and stay in torch_dtype with the norms."""
    h = a.hidden_size
    k = a.linear_num_key_heads * a.linear_key_head_dim
    v = a.linear_num_value_heads * a.linear_value_head_dim
    return [Projection(names("linear_attn.in_proj_qkv", "linear_attn.in_proj_qkvz"), 2 * k + v, h),
            Projection(names("linear_attn.in_proj_z"), v, h),
            Projection(names("linear_attn.in_proj_b", "linear_attn.in_proj_ba"), a.linear_num_value_heads, h),
            Projection(names("linear_attn.in_proj_a"), a.linear_num_value_heads, h),
            Projection(names("linear_attn.out_proj"), h, v)]


# A multimodal checkpoint names its language model under a wrapper: Mllama and Llava
# `language_model.model.layers.N`, transformers >= 4.52's Qwen2.5-VL, Gemma 3 and Llava
# `model.language_model.layers.N`, some `text_model.`. The loaders match an ignore list against those names (vLLM's
# `is_layer_skipped_bnb` against its own prefixes, `language_model.model.layers.N.mlp.gate_up_proj` for Mllama;
# transformers against `named_modules()`), so unsloth's dynamic quants list the 16-bit decoder modules of a vision
# model that way (unsloth/models/_utils.py, `patched_should_convert_module` and `_remap_text_only_skip_modules`:
# gemma-3-4b-it-unsloth-bnb-4bit "encode[s] skip paths as language_model.model.layers.*", unsloth issue 4208).
# rackfit names decoder modules `model.layers.N...` (`projections`): the wrapper is dropped before matching. Only the
# language model's wrappers: a vision tower's `vision_model.encoder.layers.N` stays as it is.
_TEXT_WRAPPER = re.compile(r"^(?:model\.)?(?:language_model|text_model)\.(?:model\.)?")


def text_model_name(entry: str) -> str:
    """An ignore-list entry with a multimodal language-model wrapper, as rackfit names the module."""
    m = _TEXT_WRAPPER.match(entry)
    if not m:
        return entry
    rest = entry[m.end():]
    return "model." + rest if rest.startswith(("layers.", "embed_tokens", "norm")) else rest


def matches(entry: str, name: str, substring: bool = False) -> bool:
    """Whether an ignore-list entry names module `name` (or a parent of it)."""
    entry = text_model_name(entry.removesuffix(".weight"))
    if entry.startswith("re:"):  # compressed-tensors / vLLM: a regex matched from the start
        return re.match(entry[3:], name) is not None
    if name == entry or name.startswith(entry + ".") or name.endswith("." + entry) or (substring and entry in name):
        return True
    if any(c in entry for c in "*?["):  # modelopt globs, gpt-oss "model.layers.*.self_attn"
        return fnmatch.fnmatchcase(name, entry) or fnmatch.fnmatchcase(name, entry + ".*")
    return False


# --- reading quantization_config ------------------------------------------------------------------------

class _Scheme(NamedTuple):
    fmt: Format
    ignore: tuple[str, ...] = ()
    substring: bool = False            # AWQ's substring match
    experts_only: bool = False         # mxfp4
    targets: tuple[str, ...] = ()      # compressed-tensors / GPTQ: only these (regex or names); () = every Linear
    lm_head: bool = False              # GPTQ lm_head: true


def _list(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list | tuple) else ()


def _ct_format(weights: dict[str, Any], fmt: str) -> Format:
    """compressed-tensors `QuantizationArgs` of the weights -> storage."""
    bits = int(weights.get("num_bits", 8))
    strategy = str(weights.get("strategy", "tensor"))
    is_float = weights.get("type", "int") == "float"
    value = bits / 8
    if bits == 4 and (is_float or "nvfp4" in fmt):  # NVFP4: fp8 scale per 16 (+ a per-tensor global)
        return Format("nvfp4", 0.5, 1.0, 1, int(weights.get("group_size") or 16))
    scale = 2.0  # scales in the model's dtype
    zero = 0.0 if weights.get("symmetric", True) else bits / 8
    name = f"{'fp' if is_float else 'int'}{bits}"
    if strategy in ("group", "tensor_group"):
        return Format(name, value, scale + zero, 1, int(weights.get("group_size") or 128))
    if strategy == "block":
        r, c = (weights.get("block_structure") or [128, 128])[:2]
        return Format(name, value, scale + zero, int(r), int(c))
    if strategy == "channel":
        return Format(name, value, scale + zero, 1, 0)
    return Format(name, value, scale + zero, 0, 0)


def _schemes(cfg: dict[str, Any]) -> tuple[list[_Scheme], str]:
    method = str(cfg.get("quant_method", "")).lower().replace("_", "-")
    not_convert = _list(cfg.get("modules_to_not_convert"))
    if method == "fbgemm-fp8":
        return [_Scheme(Format("fp8", 1.0, 4.0, 1, 0), not_convert)], "fbgemm_fp8: fp8, fp32 scale per row"
    if method == "fp8":
        block = cfg.get("weight_block_size")
        ignore = not_convert or _list(cfg.get("ignored_layers"))
        if block:
            return [_Scheme(Format("fp8", 1.0, 4.0, int(block[0]), int(block[1])), ignore)], \
                f"fp8, fp32 scale per {block[0]}x{block[1]} block"
        return [_Scheme(Format("fp8", 1.0, 4.0, 0, 0), ignore)], "fp8, per-tensor scale"
    if method == "mxfp4":
        return [_Scheme(PRECISION_FORMATS["mxfp4"], not_convert, experts_only=True)], \
            "mxfp4 experts, E8M0 scale per 32; the rest torch_dtype"
    if method == "awq":
        bits = int(cfg.get("bits", cfg.get("w_bit", 4)))
        g = int(cfg.get("group_size", cfg.get("q_group_size", 128)))
        zero = bits / 8 if cfg.get("zero_point", True) else 0.0
        fmt = Format(f"int{bits}", bits / 8, 2.0 + zero, 1, g if g > 0 else 0)
        return [_Scheme(fmt, not_convert, substring=True)], \
            f"awq int{bits}, fp16 scale{' + zero' if zero else ''} per {g if g > 0 else 'row'}"
    if method == "gptq":
        bits, g = int(cfg.get("bits", 4)), int(cfg.get("group_size", 128))
        ignore = not_convert + tuple("re:" + k[2:] for k in (cfg.get("dynamic") or {}) if str(k).startswith("-:"))
        block = [x for grp in (cfg.get("modules_in_block_to_quantize") or []) for x in _list(grp)]
        return [_Scheme(Format(f"int{bits}", bits / 8, 2.0 + bits / 8, 1, g if g > 0 else 0), ignore,
                        targets=tuple(block), lm_head=bool(cfg.get("lm_head")))], \
            f"gptq int{bits}, fp16 scale + zero per {g if g > 0 else 'row'}"
    if method == "bitsandbytes" or cfg.get("load_in_4bit") or cfg.get("load_in_8bit"):
        skip = _list(cfg.get("llm_int8_skip_modules")) or not_convert
        if cfg.get("load_in_4bit"):
            double = bool(cfg.get("bnb_4bit_use_double_quant"))
            kind = str(cfg.get("bnb_4bit_quant_type", "fp4"))
            scale = 1 + 4 / 256 if double else NF4_FP32_ABSMAX.scale_bytes
            return [_Scheme(Format(kind, 0.5, scale, 1, 64), skip, substring=True)], \
                f"bitsandbytes {kind}, absmax per 64{' (double quant)' if double else ''}"
        return [_Scheme(Format("int8", 1.0, 4.0, 1, 0), skip, substring=True)], "bitsandbytes int8, fp32 scale per row"
    if method == "modelopt":
        inner = cfg.get("quantization") if isinstance(cfg.get("quantization"), dict) else cfg
        algo = str(inner.get("quant_algo", "FP8")).upper()
        exclude = _list(inner.get("exclude_modules")) or _list(cfg.get("exclude_modules"))
        if algo == "MIXED_PRECISION":
            return _modelopt_mixed(inner, cfg, exclude)
        if "AWQ" in algo or "INT4" in algo:  # W4A16_AWQ, W4A8_AWQ: int4 + a 16-bit scale per group
            g = int(inner.get("group_size", 128))
            return [_Scheme(Format("int4", 0.5, 2.0, 1, g), exclude)], f"modelopt {algo}, 16-bit scale per {g}"
        if "NVFP4" in algo or "FP4" in algo:
            g = int(inner.get("group_size", 16))
            return [_Scheme(Format("nvfp4", 0.5, 1.0, 1, g), exclude)], f"modelopt NVFP4, fp8 scale per {g}"
        if "PER_CHANNEL" in algo:
            return [_Scheme(Format("fp8", 1.0, 4.0, 1, 0), exclude)], "modelopt FP8, fp32 scale per row"
        if "PB" in algo or "BLOCK" in algo:
            return [_Scheme(Format("fp8", 1.0, 4.0, 128, 128), exclude)], "modelopt FP8, scale per 128x128 block"
        return [_Scheme(Format("fp8", 1.0, 4.0, 0, 0), exclude)], "modelopt FP8, per-tensor scale"
    if method == "compressed-tensors":
        ignore = _list(cfg.get("ignore"))
        fmt = str(cfg.get("format", ""))
        out = []
        for group in (cfg.get("config_groups") or {}).values():
            w = group.get("weights") if isinstance(group, dict) else None
            if not w:
                continue
            targets = tuple(t for t in _list(group.get("targets")) if t != "Linear")
            out.append(_Scheme(_ct_format(w, str(group.get("format") or fmt)), ignore, targets=targets))
        names = ", ".join(sorted({s.fmt.name for s in out})) or "none"
        return out, f"compressed-tensors {names}" + (f" ({fmt})" if fmt else "")
    if isinstance(cfg.get("bits"), int):  # another integer method: `bits` with a 16-bit scale and a zero per group
        bits, g = int(cfg["bits"]), int(cfg.get("group_size") or 128)
        return [_Scheme(Format(f"int{bits}", bits / 8, 2.0 + bits / 8, 1, g if g > 0 else 0), not_convert)], \
            f"{cfg.get('quant_method')} read as int{bits} with a scale and zero per {g if g > 0 else 'row'}"
    raise ValueError(f"quant_method {cfg.get('quant_method')!r} is not modelled; "
                     "known: fp8, fbgemm_fp8, compressed-tensors, modelopt, awq, gptq, bitsandbytes, mxfp4")


# ModelOpt MIXED_PRECISION (vLLM `ModelOptMixedPrecisionConfig`, quantization/modelopt.py, read in 0.24.0; what
# vLLM logs as quantization=modelopt_mixed): each module's algorithm is its entry in `quantized_layers` (config.json's
# quantization_config, or hf_quant_config.json's "quantization"), looked up by the module's name, its fused shards'
# names, or as a parent prefix (a layer's `mlp.experts` entry covers every routed expert; `lm_head` the head);
# `get_quant_method` gives FP8 (ModelOptFp8LinearMethod: fp8 + per-tensor scales), NVFP4 and W4A16_NVFP4
# (ModelOptNvFp4LinearMethod / W4A16 / ModelOptNvFp4FusedMoE: uint8 holding two e2m1 values + an fp8 scale per
# `group_size` 16 + fp32 global scales) and leaves any module NOT listed unquantized ("Layer not in quantized_layers
# -- leave unquantized"): the router, shared_expert_gate, the linear-attention in_proj_b/a, the vision tower.
# `exclude_modules` (mtp*) are unquantized too. Formats of other per-layer algorithms as the uniform modelopt ones.
_MODELOPT_LAYER_FORMATS = {
    "FP8": Format("fp8", 1.0, 4.0, 0, 0),
    "FP8_PER_CHANNEL_PER_TOKEN": Format("fp8", 1.0, 4.0, 1, 0),
    "FP8_PB_WO": Format("fp8", 1.0, 4.0, 128, 128),
}


def _modelopt_mixed(inner: dict[str, Any], cfg: dict[str, Any],
                    exclude: tuple[str, ...]) -> tuple[list[_Scheme], str]:
    layers = inner.get("quantized_layers") or cfg.get("quantized_layers") or {}
    if not isinstance(layers, dict) or not layers:
        raise ValueError("MIXED_PRECISION quant_algo requires a non-empty 'quantized_layers' mapping")
    by_algo: dict[str, list[str]] = {}
    for name, info in layers.items():
        algo = str((info or {}).get("quant_algo", "")).upper()
        by_algo.setdefault(algo, []).append(str(name))
    out: list[_Scheme] = []
    parts = []
    for algo, targets in sorted(by_algo.items()):
        if algo in ("NVFP4", "W4A16_NVFP4"):
            g = int(next((layers[t] or {}).get("group_size") or 16 for t in targets))
            fmt = Format("nvfp4", 0.5, 1.0, 1, g)
        elif algo in _MODELOPT_LAYER_FORMATS:
            fmt = _MODELOPT_LAYER_FORMATS[algo]
        else:  # an algorithm get_quant_method does not build: UnquantizedLinearMethod
            continue
        out.append(_Scheme(fmt, exclude, targets=tuple(targets), lm_head=any(matches(t, "lm_head") for t in targets)))
        parts.append(f"{algo} on {len(targets)} modules")
    return out, "modelopt MIXED_PRECISION (" + ", ".join(parts) + "; the rest unquantized)"


def _stored(schemes: list[_Scheme], klass: str, proj: Projection, dtype: float) -> float:
    """Bytes of one matrix as stored: the first scheme that targets it and does not ignore it."""
    for s in schemes:
        if s.experts_only and klass != "experts":
            continue
        if klass == "router" and not s.targets:
            continue  # routers are never quantized unless a scheme names them
        if s.targets and not any(matches(t, n) for t in s.targets for n in proj.names):
            continue
        if any(matches(i, n, s.substring) for i in s.ignore for n in proj.names):
            continue
        return s.fmt.matrix_bytes(proj.out, proj.inp)
    return proj.out * proj.inp * dtype


def checkpoint_quantization(a: Any, config: dict[str, Any], torch_dtype: Any = None) -> Quantization:
    """The stored bytes of a checkpoint whose config.json has `config` as `quantization_config`.
    `a` is the resolved ModelArch; `torch_dtype` the config's (dtype of what is left unquantized)."""
    schemes, summary = _schemes(config)
    dtype = DTYPE_BYTES.get(str(torch_dtype or "bfloat16").removeprefix("torch."), 2.0)
    layers, present = [], []
    for i in range(a.num_layers):
        per = dict.fromkeys(CLASSES, dtype)
        projs_of = projections(a, i)
        present.append(set(projs_of))
        for klass, projs in projs_of.items():
            params = sum(p.out * p.inp for p in projs)
            per[klass] = sum(_stored(schemes, klass, p, dtype) for p in projs) / params
        layers.append(LayerBytes(**per))
    head = Projection(("lm_head",), a.vocab_size, a.hidden_size)
    lm_head = dtype
    for s in schemes:
        if s.lm_head and not any(matches(i, "lm_head") for i in s.ignore):
            lm_head = s.fmt.matrix_bytes(head.out, head.inp) / (head.out * head.inp)
    kept = [f"{klass} of layers {_ranges(idx)}" for klass in ("attention", "mlp", "experts", "shared")
            if (idx := [i for i, lb in enumerate(layers) if getattr(lb, klass) == dtype and klass in present[i]])]
    if kept:
        summary += "; left in torch_dtype: " + ", ".join(kept)
    block = config.get("weight_block_size")
    weight_block = (int(block[0]), int(block[1])) if str(config.get("quant_method", "")).lower() == "fp8" and block \
        else None
    vllm = None
    if config.get("load_in_4bit") and config.get("bnb_4bit_use_double_quant"):
        single = checkpoint_quantization(a, {**config, "bnb_4bit_use_double_quant": False}, torch_dtype)
        vllm = single.model_copy(update={"summary": single.summary.replace(
            "absmax per 64", "absmax per 64 (double quant, dequantized to fp32 by vLLM's loader)", 1)})
    return Quantization(method=str(config.get("quant_method", "")), dtype_bytes=dtype, layers=tuple(layers),
                        embedding=dtype, lm_head=lm_head, checkpoint=True, summary=summary, weight_block=weight_block,
                        vllm=vllm)


def _ranges(idx: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
