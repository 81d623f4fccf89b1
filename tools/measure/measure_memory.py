"""Measure real GPU memory of LLM inference and training on one GPU.

The harness that wrote bench/cases/h200/h200-memory-calibration.jsonl, copied unchanged from the project's shared
reference material (tools/measure_memory.py there). Needs a CUDA GPU, torch, transformers and peft; not run by the
tests.

Ground truth for the memory estimator: random-initialised models with the
exact architecture of public checkpoints (no weights are downloaded), run
in PyTorch + transformers, memory read from the CUDA caching allocator.

Each case appends one JSON line to $MEASURE_OUT/results.jsonl (default
./measure_out).  TINY=1 shrinks the models so the script can be dry-run on
a CPU; BUDGET_S bounds the run time in seconds.
"""
import gc
import json
import os
import sys
import time
import traceback

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config

OUT = os.environ.get("MEASURE_OUT", "measure_out")
os.makedirs(OUT, exist_ok=True)
TINY = os.environ.get("TINY") == "1"
CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
DEADLINE = time.time() + float(os.environ.get("BUDGET_S", "450"))
RESULTS = os.path.join(OUT, "results.jsonl")

ARCH = {
    # name: (config class, kwargs) -- numbers from the public config.json files
    "Llama-3.2-1B": (LlamaConfig, dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                       num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                       vocab_size=128256, tie_word_embeddings=True)),
    "Llama-3.2-3B": (LlamaConfig, dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                                       num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                                       vocab_size=128256, tie_word_embeddings=True)),
    "Llama-3.1-8B": (LlamaConfig, dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                       num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                       vocab_size=128256, tie_word_embeddings=False)),
    "Qwen2.5-7B": (Qwen2Config, dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4,
                                     vocab_size=152064, tie_word_embeddings=False)),
    "Mistral-7B-v0.3": (MistralConfig, dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                            num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                            vocab_size=32768, tie_word_embeddings=False, sliding_window=None)),
    "Qwen2.5-14B": (Qwen2Config, dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                                      num_attention_heads=40, num_key_value_heads=8,
                                      vocab_size=152064, tie_word_embeddings=False)),
    "Qwen2.5-32B": (Qwen2Config, dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                                      num_attention_heads=40, num_key_value_heads=8,
                                      vocab_size=152064, tie_word_embeddings=False)),
    "Mixtral-8x7B": (MixtralConfig, dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                         num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                         vocab_size=32000, num_local_experts=8, num_experts_per_tok=2,
                                         tie_word_embeddings=False, sliding_window=None)),
}

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def config_for(name):
    cls, kw = ARCH[name]
    kw = dict(kw)
    if TINY:
        kw.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1000)
        kw.pop("head_dim", None)
        if "num_local_experts" in kw:
            kw["num_local_experts"] = 4
    cfg = cls(**kw)
    cfg.use_cache = True
    return cfg, kw


def scale(n):
    """Shrink batch/sequence sizes in TINY mode."""
    return max(2, n // 256) if TINY else n


def mem():
    if not CUDA:
        return dict(allocated=0, reserved=0, max_allocated=0, max_reserved=0, device_used=0)
    free, total = torch.cuda.mem_get_info()
    return dict(allocated=torch.cuda.memory_allocated(), reserved=torch.cuda.memory_reserved(),
                max_allocated=torch.cuda.max_memory_allocated(), max_reserved=torch.cuda.max_memory_reserved(),
                device_used=total - free)


def reset():
    gc.collect()
    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def emit(rec):
    rec["t"] = round(time.time(), 1)
    line = json.dumps(rec)
    print(line, flush=True)
    with open(RESULTS, "a") as f:
        f.write(line + "\n")


def build(name, dtype):
    cfg, kw = config_for(name)
    with torch.device(DEV):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype])
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return model, cfg, kw, n_params, param_bytes


def time_left(need=20):
    return time.time() + need < DEADLINE


def environment():
    rec = dict(case="environment", torch=torch.__version__, transformers=transformers.__version__,
               python=sys.version.split()[0], cuda=CUDA, tiny=TINY)
    if CUDA:
        props = torch.cuda.get_device_properties(0)
        free0, total = torch.cuda.mem_get_info()
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        (a @ a).sum().item()  # bring up cuBLAS and its workspace
        del a
        reset()
        free1, _ = torch.cuda.mem_get_info()
        rec.update(gpu=props.name, total_bytes=total, used_before_bytes=total - free0,
                   used_after_cublas_bytes=total - free1, reserved_after=torch.cuda.memory_reserved())
    emit(rec)


def inference(name, shapes, dtype="bf16"):
    """Weights, then a serving-style prefill (only last logits kept) per (batch, seq)."""
    reset()
    base0 = mem()["allocated"]
    model, cfg, kw, n_params, param_bytes = build(name, dtype)
    m = mem()
    emit(dict(case="weights", model=name, arch=kw, dtype=dtype, n_params=n_params, param_bytes=param_bytes,
              allocated_bytes=m["allocated"] - base0, reserved_bytes=m["reserved"], device_used=m["device_used"],
              attn=getattr(model.config, "_attn_implementation", None)))
    for batch, seq in shapes:
        batch, seq = batch, scale(seq)
        if not time_left():
            emit(dict(case="skipped", model=name, batch=batch, seq=seq, why="time budget"))
            continue
        reset()
        before = mem()
        rec = dict(case="prefill", model=name, dtype=dtype, batch=batch, seq=seq, n_params=n_params)
        try:
            ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=DEV)
            with torch.no_grad():
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            if CUDA:
                torch.cuda.synchronize()
            after = mem()
            kv = 0
            for layer in getattr(out.past_key_values, "layers", []):
                for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    if isinstance(t, torch.Tensor):
                        kv += t.numel() * t.element_size()
            rec.update(kv_cache_bytes=kv, resident_after_bytes=after["allocated"] - before["allocated"],
                       peak_over_weights_bytes=after["max_allocated"] - before["allocated"],
                       max_reserved_bytes=after["max_reserved"], device_used=after["device_used"])
            del out, ids
        except torch.OutOfMemoryError as e:
            rec.update(oom=True, error=str(e)[:300])
        except Exception as e:  # record, carry on with the next case
            rec.update(error=repr(e)[:300], tb=traceback.format_exc()[-800:])
        emit(rec)
    del model
    reset()


def training(name, mode, batch, seq, checkpointing, steps=2):
    """One training configuration; peak memory over `steps` optimizer steps."""
    if not time_left(40):
        emit(dict(case="skipped", model=name, mode=mode, why="time budget"))
        return
    seq = scale(seq)
    reset()
    rec = dict(case="train", model=name, mode=mode, batch=batch, seq=seq, checkpointing=checkpointing)
    model = opt = None
    try:
        dtype = "fp32" if mode == "full_mixed_adamw" else "bf16"
        model, cfg, kw, n_params, param_bytes = build(name, dtype)
        rec.update(n_params=n_params, param_bytes=param_bytes)
        model.config.use_cache = False
        if mode.startswith("lora"):
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
                "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rec["trainable_params"] = trainable
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                fused=CUDA)
        rec["after_load_bytes"] = mem()["allocated"]
        ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=DEV)
        step_peaks = []
        for _ in range(steps):
            if CUDA:
                torch.cuda.reset_peak_memory_stats()
            if mode == "full_mixed_adamw":
                with torch.autocast(DEV, dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            else:
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_peaks.append(mem()["max_allocated"])
            del loss
        m = mem()
        rec.update(steady_bytes=m["allocated"], step_peak_bytes=step_peaks, max_reserved_bytes=m["max_reserved"],
                   device_used=m["device_used"])
    except torch.OutOfMemoryError as e:
        rec.update(oom=True, error=str(e)[:300])
    except Exception as e:
        rec.update(error=repr(e)[:300], tb=traceback.format_exc()[-800:])
    emit(rec)
    del model, opt
    reset()


def main():
    environment()
    t0 = time.time()
    # training first: it is the part the published rules of thumb get most wrong
    for name, mode, b, s, gc_on in [
        ("Llama-3.2-1B", "full_bf16_adamw", 4, 2048, False),
        ("Llama-3.2-1B", "full_bf16_adamw", 4, 2048, True),
        ("Llama-3.2-1B", "full_mixed_adamw", 4, 2048, False),
        ("Llama-3.2-1B", "full_mixed_adamw", 4, 2048, True),
        ("Llama-3.2-1B", "lora_r16", 4, 2048, False),
        ("Llama-3.2-1B", "lora_r16", 4, 2048, True),
        ("Llama-3.2-3B", "full_mixed_adamw", 2, 4096, True),
        ("Llama-3.2-3B", "full_bf16_adamw", 8, 2048, True),
        ("Llama-3.2-3B", "lora_r16", 8, 2048, False),
        ("Llama-3.1-8B", "full_bf16_adamw", 1, 4096, True),
        ("Llama-3.1-8B", "lora_r16", 4, 4096, True),
        ("Llama-3.1-8B", "lora_r16", 2, 2048, False),
        ("Qwen2.5-7B", "lora_r16", 4, 2048, True),
        ("Llama-3.1-8B", "full_mixed_adamw", 1, 2048, True),
    ]:
        training(name, mode, b, s, gc_on)
    emit(dict(case="phase", name="training", seconds=round(time.time() - t0, 1)))
    t0 = time.time()
    for name, shapes in [
        ("Llama-3.1-8B", [(1, 8192), (16, 4096), (64, 2048)]),
        ("Qwen2.5-7B", [(1, 8192), (16, 4096)]),
        ("Mistral-7B-v0.3", [(8, 8192)]),
        ("Llama-3.2-3B", [(32, 4096)]),
        ("Qwen2.5-14B", [(8, 8192)]),
        ("Qwen2.5-32B", [(4, 16384), (16, 4096)]),
        ("Mixtral-8x7B", [(4, 8192)]),
    ]:
        if not time_left(30):
            emit(dict(case="skipped", model=name, why="time budget"))
            continue
        try:
            inference(name, shapes)
        except torch.OutOfMemoryError as e:
            emit(dict(case="weights", model=name, oom=True, error=str(e)[:300]))
            reset()
    emit(dict(case="phase", name="inference", seconds=round(time.time() - t0, 1)))


if __name__ == "__main__":
    main()
