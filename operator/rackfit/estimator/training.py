"""Training model states per GPU: weights, gradients and optimizer states for each optimizer and
master-weight choice, LoRA/QLoRA adapters, ZeRO 1-3 over the data-parallel GPUs.

Mixed precision is PyTorch AMP as the Hugging Face Trainer runs it: fp32 weights (the master copy),
fp32 gradients and optimizer states, bf16 compute. Pure 16-bit keeps everything in the weights' dtype.
LoRA adapters are peft's fp32 unless training.adapterDtype says 16bit (lora_element_bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from rackfit.estimator.hf_rotary import hf_rotary_table_bytes
from rackfit.estimator.params import ParamCounts, lora_projections
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Training
from rackfit.spec.base import older

# Optimizer state elements per trainable parameter, and bytes per element. SGD's one is its momentum
# buffer, which torch.optim.SGD creates only when momentum != 0 (torch/optim/sgd.py, `_init_group`).
_STATE_ELEMS = {"adamw": 2, "adamw8bit": 2, "sgd": 1, "adafactor": 0}
ADAPTER_BYTES = 4  # peft keeps LoRA adapters in fp32


def lora_element_bytes(tr: Training) -> int:
    """Bytes a LoRA adapter element (and its gradient and each AdamW state) takes under framework transformers:
    training.adapterDtype 16bit keeps them in the model's 16-bit dtype (peft 0.6.0-0.11.x on a 16-bit base,
    LitGPT's bf16-true, Olive's QLoRA), else peft's fp32 (from 0.12.0, tuners_utils._cast_adapter_dtype)."""
    return 2 if tr.adapter_dtype == "16bit" else ADAPTER_BYTES


@dataclass(frozen=True)
class ModelStates:
    weights: int
    gradients: int
    optimizer: int
    autocast_cache: int  # bf16 copies of fp32 weights made by autocast during the forward
    trainable: int


# transformers 5.0 fuses a MoE block's experts into 3D parameters (no nn.Linear per expert for peft's
# target_modules to match); before it every expert is its own MLP of nn.Linear (modeling_qwen3_moe.py of 4.51.3:
# `self.experts = nn.ModuleList([Qwen3MoeMLP(config, intermediate_size=config.moe_intermediate_size) ...])`)
HF_FUSED_EXPERTS = (5, 0)
MLP_ROLES = frozenset({"gate", "up", "down"})


def per_expert_adapters(a: ModelArch, tr: Training) -> bool:
    """LoRA's MLP targets match every expert's (and shared expert's) own gate_proj, up_proj and down_proj: a MoE
    model under Hugging Face transformers' model code (framework transformers or deepspeed) of a named release
    before 5.0. peft matches target_modules by the module name's suffix (tuners_utils `check_target_module_exists`:
    `key.endswith(f".{target_key}")`), so "gate_proj" adapts each of the E experts' projections of
    (hidden x moeIntermediateSize), not one dense MLP; the router (`mlp.gate`) does not match."""
    return (a.is_moe and tr.method != "full" and bool(tr.targets & MLP_ROLES)
            and tr.framework in ("transformers", "deepspeed") and older(tr.transformers_version, HF_FUSED_EXPERTS))


def lora_params(a: ModelArch, tr: Training) -> int:
    """r x (in + out) for each adapted projection (training.loraTargets, all seven by default) of every layer; with
    per_expert_adapters the MoE layers' MLP adapters are the experts' own, (experts + shared) per layer."""
    if not per_expert_adapters(a, tr):
        return a.num_layers * tr.rank * sum(i + o for i, o in lora_projections(a, tr.targets))
    attention = tr.rank * sum(i + o for i, o in lora_projections(a, tr.targets - MLP_ROLES))
    dense_mlp = tr.rank * sum(i + o for i, o in lora_projections(a, tr.targets & MLP_ROLES))
    h, e = a.hidden_size, a.moe_intermediate_size
    expert = tr.rank * sum(i + o for role, (i, o) in {"gate": (h, e), "up": (h, e), "down": (e, h)}.items()
                           if role in tr.targets and (role != "gate" or a.gated_mlp))
    dense_layers = a.num_layers - a.moe_layers
    return (a.num_layers * attention + dense_layers * dense_mlp
            + a.moe_layers * (a.num_experts + a.num_shared_experts) * expert)


def optimizer_state_bytes(tr: Training, n: int, state_dtype_bytes: int, a: ModelArch) -> int:
    """Optimizer states of `n` trainable parameters kept in `state_dtype_bytes` (the master dtype)."""
    optimizer = tr.optimizer
    if optimizer == "sgd" and not tr.momentum:
        return 0
    if optimizer == "adamw8bit":
        # bitsandbytes' paged states (training.pagedOptimizer; bitsandbytes 0.43 functional.py get_paged,
        # optim/optimizer.py get_state_buffer: cudaMallocManaged for a tensor of 1e5 elements or more) are CUDA
        # managed memory, outside PyTorch's allocator, which the driver pages to the host as the GPU fills: none on it
        return 0 if tr.paged_optimizer else n * 2  # two 8-bit states (+ negligible block scales)
    if optimizer == "adamw" and tr.paged_optimizer:
        # bitsandbytes' 32-bit PagedAdamW (bitsandbytes 0.43.1 optim/adamw.py PagedAdamW: Optimizer2State("adam",
        # optim_bits=32, is_paged=True); optim/optimizer.py init_state: state1 and state2 from
        # get_state_buffer(p, dtype=torch.float32), get_paged for a tensor of 1e5 elements or more): fp32 states in
        # CUDA managed memory, outside PyTorch's allocator, as the 8-bit ones above: none on the GPU
        return 0
    if optimizer == "adafactor":
        # factored second moment: a row and a column vector per matrix, about 2h per h^2 matrix
        return int(n * 2 / a.hidden_size * state_dtype_bytes) + 1
    return n * _STATE_ELEMS[optimizer] * state_dtype_bytes


def model_states(a: ModelArch, p: ParamCounts, tr: Training, precision: str, layout: Layout,
                 frozen_weight_bytes: int) -> ModelStates:
    """`frozen_weight_bytes` is the per-GPU size of the weights in `precision` (from weights.py):
    the trained weights for a full fine-tune in 16-bit, the frozen base for LoRA/QLoRA."""
    shard = layout.tensor * layout.pipeline  # model-parallel split of every parameter
    d = layout.data
    zero = tr.zero_stage if d > 1 else 0
    if tr.method == "full":
        n = p.total // shard
        mixed = tr.master_weights == "fp32"
        wbytes = 4 if mixed else (4 if precision == "fp32" else 2)
        weights = n * wbytes if mixed or precision == "fp32" else frozen_weight_bytes
        grads = n * wbytes
        optimizer = optimizer_state_bytes(tr, n, wbytes, a)
        cache = n * 2 if mixed and precision != "fp32" else 0
        trainable = n
    else:
        n = lora_params(a, tr) // shard
        element = lora_element_bytes(tr)
        weights = frozen_weight_bytes + n * element
        grads = n * element
        optimizer = optimizer_state_bytes(tr, n, element, a)
        cache, trainable = 0, n
    if zero >= 1:
        optimizer //= d
    if zero >= 2:
        grads //= d
    if zero >= 3:
        weights //= d
        cache //= d  # each rank casts only the layers it gathers
    # transformers' per-attention-layer rotary tables (an older transformersVersion, hf_rotary.py), in the model's
    # dtype (fp32 under the Trainer's AMP) and whole on every GPU
    weights += hf_rotary_table_bytes(a, tr, precision, layout.pipeline)
    return ModelStates(weights=weights, gradients=grads, optimizer=optimizer, autocast_cache=cache,
                       trainable=trainable)



def ddp_param_grads(tr: Training, layout: Layout, bucket_bytes: int) -> int:
    """The `param.grad` tensors that DDP holds beside its gradient buckets under the transformers path (HF Trainer
    over accelerate, `data` > 1, no ZeRO): `bucket_bytes` (the trainable parameters' gradients, ModelStates.gradients)
    again, or 0 where there is no DDP.

    torch's Reducer (torch/csrc/distributed/c10d/reducer.cpp, `Reducer::initialize_buckets`) allocates one flat
    bucket tensor per bucket (`bucket_cap_mb` 25, the first `_DEFAULT_FIRST_BUCKET_BYTES` 1 MiB; together every
    parameter with requires_grad, in its dtype: under peft only the adapters) when the model is wrapped, and keeps
    them for the run. Autograd's AccumulateGrad still makes `param.grad`; `mark_variable_ready_dense` copies it into
    its bucket view (`at::mul_out(bucket_view, grad, 1/world)`) and only with `gradient_as_bucket_view=True` points
    `grad` at the bucket (`grad = bucket_view`); otherwise `finalize_bucket_dense` copies the reduced bucket back
    into the separate `param.grad` (`copy_bucket_to_grad`). accelerate's DistributedDataParallelKwargs leaves
    gradient_as_bucket_view False (accelerate/utils/dataclasses.py), and transformers' Trainer passes only
    find_unused_parameters, bucket_cap_mb, broadcast_buffers and static_graph (trainer.py
    `_build_accelerator_args`; `_wrap_model` in releases before accelerate), so from the end of the backward to
    the Trainer's `model.zero_grad()` (set_to_none) the gradients are held twice; the buckets stay after it.
    PyTorch PR 41954 (the option's origin) measured the difference: roberta-base's peak 8250 -> 7183 MB."""
    if layout.data <= 1 or tr.zero_stage or tr.framework != "transformers":
        return 0
    return bucket_bytes

def ddp_wrap_copies(tr: Training, layout: Layout, module_bytes: int) -> int:
    """Bytes of flat copies DDP's construction holds beside the model under the transformers path (HF Trainer over
    accelerate, `data` > 1, no ZeRO) on a PyTorch before 2.8 (`training.torchVersion`), given `module_bytes`, the
    parameters and buffers as stored on this GPU (ModelStates.weights); 0 elsewhere.

    DistributedDataParallel.__init__ (torch/nn/parallel/distributed.py) calls `_sync_module_states`
    (torch/distributed/utils.py), which broadcasts every parameter, frozen or not, and every buffer from rank 0 with
    `dist._broadcast_coalesced` in buckets of `broadcast_bucket_size` (250 MiB). `broadcast_coalesced`
    (torch/csrc/distributed/c10d/comm.cpp) flattens each bucket into a new tensor (`flatten_dense_tensors`), starts
    its broadcast, and with two in flight `finish()`es the oldest: `work_->wait()` makes the current stream wait for
    NCCL's, the copy back is non-blocking, and the flat tensor is freed. Nothing in the loop waits on the CPU. Before
    PyTorch 2.8 ProcessGroupNCCL had called `record_stream` on the flat tensor for its stream
    (Training.records_collective_streams), so the caching allocator keeps a freed flat block (`insert_events`) until
    the GPU has passed that broadcast: the CPU runs through all the buckets while the GPU sends the first, and every
    bucket the GPU has not yet sent stays allocated on every rank (the root flattens what it sends, the others what
    they receive). How far the CPU is ahead no source sets; counted at its bound, a flat copy of every bucket: the
    module's bytes again. The blocks return to the allocator's cache afterwards, so they raise max_memory_reserved
    once, at wrap time. From 2.8 the stashed tensors are released at `wait()` and two buckets are in flight (at most
    two 250 MiB buckets plus one tensor each), which is not counted."""
    return module_bytes if ddp_wrap_holds_copies(tr, layout) else 0


def ddp_wrap_holds_copies(tr: Training, layout: Layout) -> bool:
    """Whether DDP's construction holds the flat copies ddp_wrap_copies counts: HF Trainer's DDP (framework
    transformers, `data` > 1, no ZeRO) on a PyTorch before 2.8."""
    return layout.data > 1 and not tr.zero_stage and tr.framework == "transformers" and tr.records_collective_streams


def kbit_fp32_residual(tr: Training, precision: str) -> bool:
    """QLoRA, or LoRA on an 8-bit (LLM.int8) base, under transformers (HF Trainer with peft and bitsandbytes,
    unsharded: not ZeRO-3) runs with an fp32 residual stream. peft's prepare_model_for_kbit_training
    (peft/utils/other.py), which TRL's SFTTrainer and axolotl apply to a model loaded in 4 or 8 bits
    (`is_loaded_in_4bit or is_loaded_in_8bit`) that they do not shard (trl/trainer/sft_trainer.py), casts every
    parameter that is not quantized to fp32; with
    --bf16 TRL's peft_module_casting_to_bf16 casts the embeddings and head back but keeps the norms fp32. A norm's fp32
    output makes bitsandbytes' Linear4bit return fp32 (bitsandbytes/nn/modules.py, Linear4bit.forward:
    `out.to(inp_dtype)`; Linear8bitLt's MatMul8bitLt returns the input's dtype too), so the MLP's down projection
    adds an fp32 tensor into the residual and every layer's input (what checkpointing keeps) is fp32, as under
    autocast over fp32 weights. Not where the trainer casts the norms, embeddings and head back to 16 bits after the
    prepare (training.kbitNormsFp32 false: axolotl's load_model from September 2023)."""
    kbit = tr.method == "qlora" or (tr.method == "lora" and precision == "int8")
    return tr.framework == "transformers" and kbit and tr.zero_stage < 3 and tr.kbit_norms_fp32 is not False


def adamw_foreach(tr: Training) -> bool:
    """Whether optimizer adamw's step is torch's foreach implementation (torch/optim/adam.py `_multi_tensor_adam`:
    `exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)`, one state-sized temporary per parameter at once)
    rather than the fused kernel (in place): `training.adamwImplementation`, else fused under transformers (the H200
    rows' torch AdamW(fused=True); HF Trainer's adamw_torch_fused from torch 2.8) and foreach under fsdp.
    DeepSpeed's FusedAdam and Megatron's TE/apex FusedAdam are fused. Under deepspeed, `foreach` is a client torch
    AdamW: HF Trainer builds one when the DeepSpeed config has no "optimizer" block (transformers/integrations/
    deepspeed.py `deepspeed_optim_sched`: `optimizer = trainer.create_optimizer()`), and ZeRO points its param groups
    at its flat fp32 partitions (deepspeed/runtime/zero/stage_1_and_2.py: `param_group['params'] =
    [self.single_partition_of_fp32_groups[i]]`; stage3.py `fp32_partitioned_groups_flat`), so torch's step
    (`denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)` in `_single_tensor_adam`, `_foreach_sqrt` in
    `_multi_tensor_adam`) allocates one temporary the size of the GPU's whole fp32 partition: the 3.14 GiB a
    LLaMA-7B ZeRO-2 run over 8 V100 failed to allocate in LlamaFactory issue 1221 (6.74e9 / 8 x 4 bytes)."""
    if tr.paged_optimizer:
        # bitsandbytes' PagedAdamW (training.pagedOptimizer, the HF Trainer's optim paged_adamw_32bit also under
        # accelerate's FSDP1): its blockwise optimizer kernel updates the parameter and both states in place
        return False
    if tr.framework == "megatron":
        # Megatron-Core imports Transformer Engine's FusedAdam, else Apex's, else falls back to torch.optim.AdamW
        # (megatron/core/optimizer/__init__.py: USING_PYTORCH_OPTIMIZER, "Transformer Engine and Apex are not
        # installed. Falling back to Torch optimizers."), built without `fused` or `foreach`, so torch's foreach
        # step runs over the optimizer's fp32 main parameters (the distributed optimizer's shard): `foreach` says so
        return tr.adamw_implementation == "foreach"
    if tr.framework not in ("transformers", "fsdp", "deepspeed"):
        return False
    if tr.adamw_implementation is not None:
        return tr.adamw_implementation == "foreach"
    return tr.framework == "fsdp"


def largest_parameter(a: ModelArch, tr: Training, shard: int) -> int:
    """Elements of the largest trained tensor on one GPU, `shard` the model-parallel split: the
    embedding or LM head (vocab x hidden) or an MLP matrix for a full fine-tune; a LoRA B or A matrix."""
    if tr.method != "full":
        return tr.rank * max(a.hidden_size, a.intermediate_size, a.query_width) // shard
    return max(a.vocab_size * a.hidden_size, a.intermediate_size * a.hidden_size) // shard


def step_temporary_bytes(tr: Training, trainable: int, state_bytes: int, largest: int) -> int:
    """Memory the optimizer step allocates and frees beyond its states, for `trainable` parameters on
    this GPU whose states are `state_bytes` wide, `largest` the elements of the largest of them.
    PyTorch's optimizers default to their foreach implementation on CUDA
    (torch/optim/optimizer.py `_default_to_fused_or_foreach`), whose list ops return new tensors for
    every parameter of a group at once; a per-parameter loop holds one parameter's temporaries at a time:

    - AdamW fused (the H200 rows' torch AdamW(fused=True); transformers' Trainer default optim
      adamw_torch_fused; DeepSpeed's FusedAdam; Megatron's TE/apex FusedAdam): none, the kernel updates in
      place. AdamW foreach (torch.optim.AdamW without fused=True, as torchtitan's 2024 default and
      accelerate's FSDP loops construct it): torch/optim/adam.py `_multi_tensor_adam` makes
      `exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)`, one state-sized tensor per parameter; before
      PyTorch 2.1 (training.torchVersion) `denom = torch._foreach_add(exp_avg_sq_sqrt, eps)` a second one beside it
      (Training.foreach_adamw_intermediates).
    - SGD (torch/optim/sgd.py `_multi_tensor_sgd`): with weight decay, a new gradient list
      (`device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)`): one copy of
      the gradients in the master dtype; without one the momentum update is in place and the step
      allocates nothing. The framework's default decides: HF Trainer's is 0 (transformers/training_args.py,
      `weight_decay: float = 0.0`), so `transformers` counts none; the other frameworks' recipes set one
      (torchtitan's optimizer config 0.1, Megatron's --weight-decay 0.01), so they count the copy.
    - Adafactor loops over parameters: transformers' (transformers/optimization.py, the Trainer's
      optim="adafactor") makes fp32 copies of a 16-bit gradient and parameter, the update, its factored
      replacement (`_approx_sq_grad`) before the old one is freed, and `-update`: four fp32 tensors of the
      parameter's size live at once, two for fp32 parameters (no copies). torch.optim.Adafactor also
      defaults to its per-parameter loop (foreach only when asked, torch/optim/_adafactor.py) and needs
      less (one tensor in the parameter's dtype), so it is counted as transformers' (the high side).
    - adamw8bit (bitsandbytes): blockwise kernels in place.
    """
    optimizer = tr.optimizer
    if optimizer == "adamw":
        # before PyTorch 2.1 foreach AdamW holds two state-sized lists at once (Training.foreach_adamw_intermediates)
        return trainable * state_bytes * tr.foreach_adamw_intermediates if adamw_foreach(tr) else 0
    if optimizer == "sgd":
        return 0 if tr.framework == "transformers" else trainable * state_bytes
    if optimizer == "adafactor":
        return largest * 4 * (4 if state_bytes == 2 else 2)
    return 0
