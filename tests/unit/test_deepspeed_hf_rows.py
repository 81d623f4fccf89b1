"""DeepSpeed ZeRO-1/2's optimizer step as stage_1_and_2.py runs it, and the PEFT / DeepSpeed rows and facts (T60-T63)
of bench/cases/public/training.yaml (issue 22). Expected bytes are computed by hand from the source's operations."""

from __future__ import annotations

from pathlib import Path

from bench_modules import bench

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.training import lora_params
from rackfit.estimator.zero import zero3_step, zero12_step
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

REPO = Path(__file__).resolve().parents[2]
LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)


def peak(layout: Layout, **training):
    return runtime_peak(LLAMA, P, Training(framework="deepspeed", masterWeights="fp32", **training), "bf16",
                        layout, 0)


def test_zero12_step_moments_by_hand():
    """Moment A: the 16-bit partition (a state), its flat copy (torch.cat, 2 bytes) and the fp32 upcast (4 bytes);
    moment B: the 16-bit gradients freed, the fp32 partition and the optimizer's temporary."""
    part = 1_000_000
    assert zero12_step(part, 2, 0) == (6 * part, 0)             # FusedAdam: the flatten moment
    assert zero12_step(part, 2, 4 * part) == (6 * part, 0)      # foreach AdamW: 4 + 4 - 2 ties the flatten
    assert zero12_step(part, 2, 8 * part) == (2 * part, 8 * part)  # two partition temporaries (torch's single-tensor)
    assert zero12_step(part, 4, 0) == (4 * part, 0)             # fp32 module: the flat copy is the fp32 one


def test_zero2_step_holds_no_allgather_bucket_and_frees_the_16bit_gradients():
    """LLaMA-style 8B over 8 GPUs, ZeRO-2: the step's transient is 6 bytes per partition element, fused or foreach
    AdamW; before, the all-gather bucket (5e8 x 2 bytes) and the 16-bit gradients were counted beside the step."""
    part = P.total // 8
    fused = peak(Layout(data=8), zeroStage=2)
    foreach = peak(Layout(data=8), zeroStage=2, adamwImplementation="foreach")
    assert fused.step_transient - fused.step_cached == part * 6
    # reserved beside it: the norm's fp64 copy of the embedding's gradient (zero.zero12_prestep, 4.2 GB), where the
    # fp32 gradients (4.0 GB) then fit; the flat copy takes a block the loss's backward freed (its fp32 logits)
    assert fused.step_cached == 8 * LLAMA.vocab_size * LLAMA.hidden_size - part * 4
    # allocated: 6 bytes; foreach's temporary takes a segment of its own beside it (zero.zero12_step_cached), and
    # the fp64 copy's 0.2 GB left over as well
    assert foreach.step_transient - foreach.step_cached == part * 6
    assert foreach.step_cached == part * 4 + fused.step_cached


def test_zero3_step_flattens_one_sub_group():
    """stage3.py _prepare_fp32_grad_for_sub_group: flat 16-bit copy and fp32 upcast of one sub-group (sub_group_size
    1e9 elements); the optimizer then steps that sub-group's fp32 partition alone, so a client AdamW's temporary is
    one sub-group's (4 bytes), which outweighs the freed flat copy (2 bytes)."""
    sub = min(P.total // 8, 1_000_000_000)
    assert zero3_step(sub, 2, 0) == (6 * sub, 0)
    assert zero3_step(sub, 2, 4 * sub) == (4 * sub, 4 * sub)
    assert peak(Layout(data=8), zeroStage=3).step_transient == 6 * sub
    assert peak(Layout(data=8), zeroStage=3, adamwImplementation="foreach").step_transient == 8 * sub
    # one GPU (DeepSpeed runs ZeRO-3 over one partition): still one sub-group at a time, not the whole model
    assert peak(Layout(data=1), zeroStage=3, adamwImplementation="foreach").step_transient == 8 * 1_000_000_000


def test_zero2_on_one_gpu_runs_the_whole_partition():
    """OpenRLHF issue 698 (T19): ZeRO-2 on one A100, FusedAdam; the step's flatten moment is the whole model's
    16-bit copy and fp32 copy beside the 16-bit gradients: 6 bytes a parameter."""
    one = peak(Layout(data=1), zeroStage=2)
    assert one.step_transient - one.step_cached == P.total * 6
    # the norm's fp64 copy of the embedding's gradient, too small for the step's blocks, stays reserved beside them
    assert one.step_cached == 8 * LLAMA.vocab_size * LLAMA.hidden_size
    assert one.phase == "optimizer step"


def test_peft_deepspeed_and_fsdp_rows_and_facts():
    """T60-T62 within 10% of what PEFT's guides report, T5's checkpointed ZeRO-3 row within 2% (the flat copy);
    the facts T60, T61 (ran) and T63 (OOM) right; T27's ZeRO-2 OOM at the step still said."""
    mod = bench("public_training")
    rows = {(r["id"], r["variant"]): r for r in mod.measure()}
    for key in [("T60", "nvidia-smi (80% of 79.65 GiB)"), ("T61", "per GPU"), ("T62", "without CPU offload")]:
        r = rows[key]
        assert abs(mod.err(r["rackfit"], r["measured"])) <= 10, key
    assert abs(mod.err(rows[("T5", "full AC")]["rackfit"], rows[("T5", "full AC")]["measured"])) <= 2
    facts = {(f["id"], f["variant"]): f for f in mod.fit_facts()}
    for fid in ("T60", "T61", "T63", "T27"):
        for (i, _), f in facts.items():
            if i == fid:
                assert f["said"] == f["fits"], (i, f["variant"])


def test_lora_under_zero3_is_built_under_zero_init():
    """PEFT's ZeRO-3 path builds the base under deepspeed.zero.Init, whose patched linear saves the parameter, so
    without checkpointing the frozen base is not kept gathered to its backward: the live parameters and the prefetch
    bucket (1e9 + 5e7 elements in 16 bits) bound what is gathered, as with checkpointing. A full fine-tune keeps the
    upper bound only when the model is handed to deepspeed.initialize outside zero.Init (zeroInit false): every 16-bit
    weight."""
    bound = min(1_000_000_000 + 50_000_000, P.total) * 2

    def lora(ckpt):
        tr = Training(framework="deepspeed", zeroStage=3, activationCheckpointing=ckpt, method="lora", loraRank=16)
        return tr, runtime_peak(LLAMA, P, tr, "bf16", Layout(data=8), P.total * 2)

    tr, none = lora("none")
    _, full_ac = lora("full")
    sharded = (P.total * 2 + lora_params(LLAMA, tr) * 4) // 8   # frozen base and fp32 adapters over 8 ranks
    assert none.phase != "optimizer step" and full_ac.phase != "optimizer step"
    assert none.weights == full_ac.weights == sharded + bound
    full = peak(Layout(data=8), zeroStage=3, activationCheckpointing="none", zeroInit=False)
    assert full.weights == P.total * 2 // 8 + P.total * 2   # every layer's 16-bit weights kept (upper bound)


def test_zero2_flatten_moment_matches_baichuan2_log():
    """LlamaFactory issue 1158 (T67): Baichuan2-13B, ZeRO-2 over 4 A800, "Tried to allocate 12.94 GiB ... 77.65 GiB
    already allocated". By stage_1_and_2.py's step the failed request is the fp32 upcast of the rank's partition, made
    while the 16-bit weights, the fp32 master and Adam states, the 16-bit gradient partition and its flat copy are
    allocated: rackfit's step peak less that upcast is the log's 77.65 GiB, and the upcast is 12.94 GiB."""
    from rackfit.estimator.weights import weight_bytes
    from rackfit.models import resolve as resolve_model
    from rackfit.spec import parse_spec
    from rackfit.units import GiB

    case = next(c for c in bench("public_training").load_cases(bench("public_training").CASES) if c["id"] == "T67")
    spec = parse_spec(case["spec"])
    arch = resolve_model(spec.model)
    p = count_params(arch)
    layout = Layout(data=4)
    r = runtime_peak(arch, p, spec.training, "bf16", layout, weight_bytes(p, "bf16", layout, arch.num_layers, arch))
    upcast = p.total // 4 * 4
    assert r.phase == "optimizer step"
    assert abs(upcast / GiB - 12.94) < 0.01
    # allocated: the step's peak less what it holds reserved, not allocated (the norm's cached fp64 copy)
    assert abs((r.weights + r.gradients + r.optimizer - r.step_cached - upcast) / GiB - 77.65) < 0.05


def test_zero12_keeps_no_16bit_gradients_between_steps():
    """stage_1_and_2.py's step frees every 16-bit gradient and the next backward re-creates the partition buffer, so
    what stays allocated between steps (RuntimePeak.states, the steady reading) is the 16-bit module and the fp32
    master and Adam partitions; ZeRO-3 keeps its partitioned-gradient buffer and reduce bucket."""
    part = P.total // 8
    z2 = peak(Layout(data=8), zeroStage=2)
    assert z2.states == P.total * 2 + part * 12
    z3 = peak(Layout(data=8), zeroStage=3)
    assert z3.states == part * 2 + part * 2 + 500_000_000 * 2 + part * 12


def test_fp16_without_zero_runs_fp16_optimizer():
    """engine.py picks FP16_Optimizer for fp16 without ZeRO (runtime/fp16/fused_optimizer.py): fp16 gradients in the
    backward, each one's fp32 copy and their flat concatenation at the step (8 bytes a parameter beside the fp16
    gradients), nothing kept between steps; bf16 without ZeRO keeps BF16_Optimizer's fp32 gradient buffer."""
    def opt_peak(precision):
        tr = Training(framework="deepspeed", zeroStage=0, masterWeights="fp32")
        return runtime_peak(LLAMA, P, tr, precision, Layout(), 0)

    fp16, bf16 = opt_peak("fp16"), opt_peak("bf16")
    assert fp16.step_transient == P.total * 8
    assert fp16.states == P.total * 2 + P.total * 12           # fp16 module, fp32 master and two Adam states
    assert bf16.states == P.total * 2 + P.total * 4 + P.total * 12   # and BF16_Optimizer's fp32 gradients


def test_fp32_module_upcast_is_the_flat_copy():
    """With an fp32 module the step's `.to(fp32)` returns the flat copy itself: ZeRO-1/2 hold the flat fp32 copy
    beside the fp32 gradients (then the optimizer's temporary once those are freed); ZeRO-3 one sub-group's flat
    copy and the temporary."""
    part = 1_000_000
    assert zero12_step(part, 4, 0) == (4 * part, 0)
    assert zero12_step(part, 4, 4 * part) == (4 * part, 0)       # a tie: the flat copy, or the temporary alone
    assert zero12_step(part, 4, 8 * part) == (0, 8 * part)
    assert zero3_step(part, 4, 4 * part) == (4 * part, 4 * part)


def test_an_8bit_lora_base_runs_with_the_fp32_residual_of_kbit_training():
    """peft's prepare_model_for_kbit_training applies to a model loaded in 8 bits as in 4: LoRA on an int8 base under
    transformers keeps fp32 layer inputs (training.kbit_fp32_residual), a 16-bit LoRA does not."""
    from rackfit.estimator.training import kbit_fp32_residual
    from rackfit.spec import Training

    lora = Training(framework="transformers", method="lora", microBatchSize=1)
    assert kbit_fp32_residual(lora, "int8") and not kbit_fp32_residual(lora, "bf16")
    assert kbit_fp32_residual(Training(framework="transformers", method="qlora"), "nf4")
    assert not kbit_fp32_residual(Training(framework="deepspeed", zeroStage=3, method="lora"), "int8")
