"""Catalog value objects: a GPU model and an instance type (a node shape)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from rackfit.units import GB, GiB, MiB

Architecture = Literal["volta", "turing", "ampere", "hopper", "ada", "blackwell"]

# Weight formats each architecture runs. FP8 tensor cores arrived with Ada and Hopper, FP4 (NVFP4) with
# Blackwell; MXFP4 checkpoints (gpt-oss) also run on Hopper through weight-only kernels. FP8 checkpoints run on
# Ampere weight-only: vLLM's Fp8LinearMethod falls back to the FP8 Marlin kernel below compute capability 8.9
# (vllm/model_executor/layers/quantization/fp8.py, `use_marlin = not current_platform.has_device_capability(89)`),
# the weights stored in fp8 as on Hopper; the estimate notes that other runtimes need 8.9 (estimator/__init__.py).
# Volta (V100, 7.0) and Turing (T4, 7.5) have no bf16 tensor cores and run no fp8 or fp4: vLLM's Fp8Config,
# FBGEMMFp8Config, the FP8 Marlin kernel (utils/marlin_utils_fp8.py is_fp8_marlin_supported) and the int4 Marlin
# kernels all need capability 8.0 (get_min_capability, read in vLLM 0.9.0), so int4/int8 checkpoints run through the
# older kernels (GPTQConfig 6.0, AWQConfig 7.5, BitsAndBytesConfig 7.0) with the same storage. A bf16 model is cast to
# fp16 by vLLM from 0.9.0 and refused before it (estimator/pre_ampere.py pre_ampere_refusal); bf16 is not among
# their formats.
_FORMATS: dict[str, frozenset[str]] = {
    "volta": frozenset({"fp32", "fp16", "int8", "int4", "nf4"}),
    "turing": frozenset({"fp32", "fp16", "int8", "int4", "nf4"}),
    "ampere": frozenset({"fp32", "bf16", "fp16", "int8", "int4", "nf4", "fp8"}),
    "ada": frozenset({"fp32", "bf16", "fp16", "int8", "int4", "nf4", "fp8"}),
    "hopper": frozenset({"fp32", "bf16", "fp16", "int8", "int4", "nf4", "fp8", "mxfp4"}),
    "blackwell": frozenset({"fp32", "bf16", "fp16", "int8", "int4", "nf4", "fp8", "mxfp4", "nvfp4"}),
}


# GPUs that HGX/SXM boards join by NVLink (NVSwitch) inside a node: A100 SXM, H100 SXM, H20 (HGX H20, NVLink
# 900 GB/s), H200, GH200, B200, B300, GB200, GB300; and V100 SXM2, whose boards (AWS p3.8xlarge/p3.16xlarge and
# p3dn.24xlarge, DGX-1) join 4 or 8 GPUs by NVLink 2 in a hybrid cube mesh without NVSwitch (DGX-2's are behind
# NVSwitch). Their PCIe variants (product label "...-PCIe-..." / "...-PCIE-...") and the PCIe-only cards (T4, L4, L20,
# L40S, A10, RTX) talk over PCIe. NCCL opens many more channels over NVLink (estimator/non_torch.py,
# NCCL_NVLINK_GROUP, measured on H100's NVSwitch: on the V100's cube mesh unmeasured); NVLink SHARP needs NVSwitch
# and Hopper or later (estimator/comms.py NVLS_CHANNELS has no Volta entry).
_NVLINK_MODELS = ("A100", "H100", "H20", "H200", "GH200", "B200", "B300", "GB200", "GB300", "V100")


# Streaming multiprocessors and compute capability per GPU model (NVIDIA's data sheets: CUDA cores / 128 a GA10x, Ada
# or Blackwell-consumer SM, / 64 an A100, Hopper or B200 SM; capability from NVIDIA's CUDA GPUs list). The RTX 3050 is
# the 8 GB desktop part (2,560 cores; the 6 GB desktop has 18 SMs): the larger, so its CUDA context is not
# under-counted. A model not here has None (estimator/context.py then keeps the H200's measured context): the H20 and
# GB300, whose SM counts NVIDIA does not publish.
_SM_COUNT: dict[str, tuple[int, tuple[int, int]]] = {
    "V100": (80, (7, 0)), "T4": (40, (7, 5)),
    "A100": (108, (8, 0)), "A100 PCIe": (108, (8, 0)), "A800": (108, (8, 0)),
    "A10": (72, (8, 6)), "A10G": (80, (8, 6)), "A40": (84, (8, 6)), "A2": (10, (8, 6)), "RTX A4000": (48, (8, 6)),
    "RTX 3050": (20, (8, 6)), "RTX 3070 Laptop": (40, (8, 6)), "RTX 3090": (82, (8, 6)),
    "L4": (58, (8, 9)), "L20": (92, (8, 9)), "L40": (142, (8, 9)), "L40S": (142, (8, 9)), "RTX 4060": (24, (8, 9)),
    "RTX 4070 SUPER": (56, (8, 9)), "RTX 4080": (76, (8, 9)), "RTX 4090": (128, (8, 9)),
    "H100": (132, (9, 0)), "H100 NVL": (132, (9, 0)), "H100 PCIe": (114, (9, 0)), "H800": (132, (9, 0)),
    "H200": (132, (9, 0)), "GH200": (132, (9, 0)),
    "B200": (148, (10, 0)), "GB200": (148, (10, 0)),
    "RTX 5060 Ti": (36, (12, 0)), "RTX 5080": (84, (12, 0)), "RTX 5090": (170, (12, 0)), "RTX PRO 6000": (188, (12, 0)),
    "RTX Pro 6000 Blackwell": (188, (12, 0)), "GB10": (48, (12, 1)),
}
# The total memory CUDA reports (cudaMemGetInfo's total, what torch prints as "GPU 0 has a total capacity of X GiB"
# and vLLM as its total, and what the engines' memory fractions multiply: estimator/engine_defaults.cuda_total_bytes),
# in GiB, per GPU model and GPU Feature Discovery memory label (nvidia.com/gpu.memory, MiB): the driver keeps a
# different share of each card. Read from public logs of 2024 on, the newest where they disagree: the driver's share
# has grown (a T4 of 15,360 MiB printed 14.75-14.76 GiB in 2021-2024 and 14.56 in 2025-2026; an RTX 4090 23.64-23.68
# in 2023-2025, 23.52 under R580 in 2026). A model or label not here (V100, RTX 3090 and A10G, whose logs found are
# of 2021-2023; L4, L40, H20, H800, GB200, GB300, the PCIe A100/H100, ...) keeps the label less
# engine_defaults.DRIVER_RESERVED.
_CUDA_TOTAL_GIB: dict[tuple[str, int], float] = {
    # github.com/facebookresearch/tribev2/issues/28 (2026-04, Colab): "GPU 0 has a total capacity of 14.56 GiB";
    # github.com/Zheng-Chong/CatVTON/issues/133 (2025-11, GCP T4) the same; 14.74-14.76 before (CogVideo#741, 2025-03)
    ("T4", 15360): 14.56,
    # github.com/TianheWu/CoSeR/issues/10 (2025-01): "GPU 0 has a total capacity of 39.50 GiB"; deviceQuery's
    # 40,339 MiB (39.39) under CUDA 12.2 in bottlerocket-os/bottlerocket PR 3873
    ("A100", 40960): 39.50,
    # github.com/HiDream-ai/VAREdit/issues/6 (2025-12): "GPU 0 has a total capacity of 79.25 GiB"; 79.25 also in
    # levihsu/OOTDiffusion#235 (2025-03), 79.14 in lianqi1008/Control-GIC#6 (2025-10)
    ("A100", 81920): 79.25,
    # github.com/OpenBMB/MiniCPM-V/issues/640 (2024-10, vLLM on one A10): "GPU 0 has a total capacity of 22.18 GiB"
    ("A10", 23028): 22.18,
    # github.com/pytorch/pytorch/issues/182941 (2026-05, R580, CUDA 13.0): "(GPU 0; 23.52 GiB total; 0 bytes free)";
    # 23.64 in 3DTopia/Phidias-Diffusion#8 (2025-08), 23.68 in zai-org/CogVideo#36 (2023)
    ("RTX 4090", 24564): 23.52,
    # github.com/Wan-Video/Wan2.1/issues/465 (2025-07): "GPU 0 has a total capacity of 31.37 GiB"; deviceQuery's
    # 32,117-32,120 MiB in NVIDIA/nccl#1637 and aikitoria/open-gpu-kernel-modules#1
    ("RTX 5090", 32607): 31.37,
    # github.com/DengKaiCQ/VGGT-Long/issues/6 (2025-07): "GPU 0 has a total capacity of 15.61 GiB"
    ("RTX A4000", 16376): 15.61,
    # github.com/stepfun-ai/Step-Video-T2V/issues/8 (2025-02, 8 x L40S): "GPU  has a total capacity of 44.42 GiB"
    # (vLLM's 44.42 in S261's log, bench/cases/public/public-measurements.md)
    ("L40S", 46068): 44.42,
    # github.com/vllm-project/vllm/issues/27508 (2025-10): "GPU 0 has a total capacity of 79.11 GiB"; vLLM's own
    # logs gave 79.22 in PR 10511 (2024-12) and PR 12126 (2025-01)
    ("H100", 81559): 79.11,
    # github.com/ali-vilab/VACE/issues/56 (2025-05, RunPod H100 NVL): "GPU 0 has a total capacity of 93.00 GiB"
    ("H100 NVL", 95830): 93.00,
    # this project's own H200 run (bench/cases/h200/h200-memory-calibration.jsonl, environment row, torch 2.11.0+cu130):
    # torch.cuda.mem_get_info's total 150,109,880,320 bytes
    ("H200", 143771): 139.80,
    # github.com/Lightning-AI/litgpt/issues/1892 (2024-12, nvidia-smi 97,871 MiB): "GPU 0 has a total capacity of
    # 94.88 GiB"
    ("GH200", 97871): 94.88,
    # github.com/pytorch/ao PR 4002 (2026-03, a cudaGetDeviceProperties query): "Total Global Memory: 178.35 GB"
    # (GiB: the label is 179.06 GiB)
    ("B200", 183359): 178.35,
    # github.com/AlexGS74/glm47-nvfp4-sm120 docs/vllm-sm120-nvfp4-working-state.md (2026-02, the Max-Q edition, S1322's
    # source): "GPU 3 has a total capacity of 94.97 GiB"
    ("RTX PRO 6000", 97887): 94.97, ("RTX Pro 6000 Blackwell", 97887): 94.97,
}
# Resident threads an SM holds at most, by compute capability (CUDA C++ Programming Guide, "Technical Specifications
# per Compute Capability": 1,024 on Turing, 1,536 on GA10x, Ada and consumer Blackwell, 2,048 on the rest).
_THREADS_PER_SM = {(7, 5): 1024, (8, 6): 1536, (8, 9): 1536, (12, 0): 1536, (12, 1): 1536}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class GPU(_Frozen):
    model: str
    product: str = Field(description="nvidia.com/gpu.product label value")
    memory_gb: float = Field(gt=0, alias="memoryGB", description="vendor's nominal memory, decimal GB")
    memory_mib: int = Field(gt=0, alias="memoryMiB", description="nvidia.com/gpu.memory label value")
    architecture: Architecture
    host_memory_gb: float = Field(0, ge=0, alias="hostMemoryGB",
                                  description="CPU memory reachable over NVLink-C2C (GH200)")

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MiB

    @property
    def host_memory_bytes(self) -> int:
        return int(self.host_memory_gb * GB)

    @property
    def formats(self) -> frozenset[str]:
        return _FORMATS[self.architecture]

    @property
    def published_cuda_total_bytes(self) -> int | None:
        """The total CUDA reports on this model at this label (_CUDA_TOTAL_GIB), None where no log gives it."""
        gib = _CUDA_TOTAL_GIB.get((self.model, self.memory_mib))
        return None if gib is None else round(gib * GiB)

    @property
    def sm_count(self) -> int | None:
        """Streaming multiprocessors (_SM_COUNT), None for a model not listed."""
        known = _SM_COUNT.get(self.model)
        return known[0] if known else None

    @property
    def compute_capability(self) -> tuple[int, int] | None:
        known = _SM_COUNT.get(self.model)
        return known[1] if known else None

    @property
    def max_threads_per_sm(self) -> int | None:
        cc = self.compute_capability
        return None if cc is None else _THREADS_PER_SM.get(cc, 2048)

    @property
    def nvlink(self) -> bool:
        """GPUs of this kind are joined by NVLink inside a node (SXM boards), not by PCIe."""
        return self.model.upper().startswith(_NVLINK_MODELS) and "PCIE" not in self.product.upper()


class InstanceType(_Frozen):
    name: str
    gpu: GPU
    gpus_per_node: int = Field(gt=0)
    nvlink_domain_gpus: int = Field(gt=0, alias="nvlinkDomainGPUs",
                                    description="GPUs joined by NVLink: 8 on HGX, 72 on NVL72, 1 on PCIe")
    interconnect: str = ""
    price_per_hour: float | None = Field(None, ge=0, description="per node, in the catalog's currency")
    source: str = ""

    @property
    def nodes_per_domain(self) -> int:
        """Nodes one NVLink domain spans (18 for an NVL72 rack of 4-GPU nodes, 1 for an HGX host)."""
        return max(1, self.nvlink_domain_gpus // self.gpus_per_node)

    @property
    def tensor_parallel_limit(self) -> int:
        """Largest tensor-parallel group: the NVLink domain, or the host for PCIe cards (TP over PCIe
        inside one host works, as vLLM runs it on 8 x L40S; across hosts it does not pay)."""
        return max(self.nvlink_domain_gpus, self.gpus_per_node)
