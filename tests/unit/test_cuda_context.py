"""The CUDA context per GPU (estimator/context.py): the H200's measurement with its stack reservation and torch's
cuBLAS workspace moved to the GPU's."""

from rackfit.catalog import load_catalog
from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.context import (
    CONTEXT_BEFORE_CUBLAS,
    CUDA_CONTEXT_BYTES,
    context_before_cublas,
    cuda_context_bytes,
    stack_reservation_bytes,
    torch_cublas_workspace_bytes,
)
from rackfit.spec import parse_spec
from rackfit.units import MiB


def gpu(model: str, architecture: str, mib: int = 24576) -> GPU:
    return GPU(model=model, product=model, memoryGB=mib / 954, memoryMiB=mib, architecture=architecture)


def test_the_calibration_gpu_and_unknown_gpus_keep_the_measurement():
    for g in (None, gpu("H200", "hopper", 143771), gpu("H100", "hopper", 81559), gpu("Some GPU", "ampere")):
        assert cuda_context_bytes(g) == CUDA_CONTEXT_BYTES
        assert context_before_cublas(g) == CONTEXT_BEFORE_CUBLAS


def test_the_stack_reservation_is_the_default_stack_for_every_resident_thread():
    # 216 MiB on a 108-SM A100 (arcs-skku/EMDC_llvm issue 13): 1 KiB x 2,048 threads x 108 SMs
    assert stack_reservation_bytes(gpu("A100", "ampere")) == 216 * MiB
    assert stack_reservation_bytes(gpu("T4", "turing")) == 40 * 1024 * 1024    # Turing: 1,024 threads an SM
    assert stack_reservation_bytes(gpu("RTX 3090", "ampere")) == 82 * 1536 * 1024
    assert stack_reservation_bytes(gpu("H200", "hopper")) == 264 * MiB
    assert stack_reservation_bytes(gpu("Some GPU", "ampere")) == 0


def test_a_smaller_gpu_holds_a_smaller_context():
    t4, a100, b200 = gpu("T4", "turing"), gpu("A100", "ampere"), gpu("B200", "blackwell")
    assert context_before_cublas(t4) == CONTEXT_BEFORE_CUBLAS - (264 - 40) * MiB
    assert context_before_cublas(a100) == CONTEXT_BEFORE_CUBLAS - (264 - 216) * MiB
    assert context_before_cublas(b200) == CONTEXT_BEFORE_CUBLAS + (296 - 264) * MiB   # 148 SMs
    # below Hopper torch's cuBLAS workspace is 8.125 MiB, not 32 (CublasHandlePool.cpp parseChosenWorkspaceSize)
    h200_cublas = CUDA_CONTEXT_BYTES - CONTEXT_BEFORE_CUBLAS
    assert torch_cublas_workspace_bytes(a100) == 4096 * 1024 * 2 + 16 * 1024 * 8
    assert cuda_context_bytes(a100) - context_before_cublas(a100) == h200_cublas - 32 * MiB + 8 * MiB + 128 * 1024
    assert cuda_context_bytes(b200) - context_before_cublas(b200) == h200_cublas
    assert torch_cublas_workspace_bytes(gpu("RTX 5090", "blackwell")) == 32 * MiB     # compute capability 12.0


def test_the_estimate_counts_the_gpus_context():
    spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                           inference=dict(contextLength=4096, engineVersion="0.19.0")))
    l4, h100 = gpu("L4", "ada", 23034), gpu("H100", "hopper", 81559)
    assert estimate(spec, gpu=l4).breakdown.overhead_bytes == cuda_context_bytes(l4) < CUDA_CONTEXT_BYTES
    assert estimate(spec, gpu=h100).breakdown.overhead_bytes == CUDA_CONTEXT_BYTES


def test_the_catalogs_gpus_have_their_sms():
    missing = {t.gpu.model for t in load_catalog().instance_types.values() if t.gpu.sm_count is None}
    assert missing <= {"GB300"}, missing


def test_the_rtx_3070_laptop_and_rtx_5060_ti_have_their_sms():
    # NVIDIA's data sheets: 5,120 CUDA cores (GA104 laptop, capability 8.6) and 4,608 (GB206, 12.0), 128 an SM
    laptop, ti = gpu("RTX 3070 Laptop", "ampere", 8192), gpu("RTX 5060 Ti", "blackwell", 16311)
    assert (laptop.sm_count, laptop.compute_capability) == (40, (8, 6))
    assert (ti.sm_count, ti.compute_capability) == (36, (12, 0))
    assert stack_reservation_bytes(laptop) == 40 * 1536 * 1024
    assert context_before_cublas(laptop) == CONTEXT_BEFORE_CUBLAS - 264 * MiB + 60 * MiB
