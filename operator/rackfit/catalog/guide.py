"""`rackfit catalog --check-guide`: recompute the instance-selection guide's table with its own rules
(FP8 inference: 1 byte per parameter; BF16 training: 16 bytes per parameter) from the catalog's
memory, and list the rows where the guide's printed figures disagree with those rules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from rackfit.catalog import Catalog
from rackfit.units import GB, fmt_count

# The guide's table as printed: (instance type, GPUs in the system, total TB, max inference params,
# max training params). Source: docs/reference/instance-selection-guide.md, "Instance comparison".
GUIDE_ROWS: list[tuple[str, int, float, float, float]] = [
    ("gb300-4x", 72, 20.7e12, 10.3e12, 1.3e12),
    ("gb300-4x", 64, 18.4e12, 9.2e12, 1.15e12),
    ("gb200-4x", 72, 13.8e12, 13.8e12, 860e9),
    ("gb200-4x", 64, 12.3e12, 12.3e12, 768e9),
    ("b200-8x", 8, 1.54e12, 1.54e12, 96e9),
    ("gd-8xh200ib-i128", 8, 1.13e12, 1.13e12, 70e9),
    ("gd-8xh100ib-i128", 8, 640e9, 640e9, 40e9),
    ("rtxp6000-8x", 1, 96e9, 86e9, 6e9),
    ("gd-8xl40s-i128", 1, 48e9, 43e9, 3e9),
    ("gd-8xl40-i128", 1, 48e9, 43e9, 3e9),
    ("gd-1xgh200", 1, 576e9, 576e9, 6e9),
    ("gd-8xa100-i128", 8, 640e9, 640e9, 40e9),
]
INFERENCE_BYTES_PER_PARAM = 1   # FP8
TRAINING_BYTES_PER_PARAM = 16   # BF16 mixed precision with Adam
TOLERANCE = 0.15  # the single-GPU rows keep ~10% back for overhead; beyond 15% the guide contradicts itself


class GuideRow(BaseModel):
    """One row of the guide's table, recomputed. Memory is the vendor's nominal (decimal) size, as the
    guide quotes it; parameter counts are whole numbers. JSON keys are camelCase, as everywhere."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    instance_type: str
    gpus: int
    memory_bytes: int
    guide_memory_bytes: int
    inference_params: int
    training_params: int
    guide_inference_params: int
    guide_training_params: int
    disagreements: list[str]


def check_guide(catalog: Catalog) -> list[GuideRow]:
    rows = []
    for name, gpus, guide_total, guide_inf, guide_train in GUIDE_ROWS:
        gpu = catalog.get(name).gpu
        memory = round((gpu.memory_gb + gpu.host_memory_gb) * GB * gpus)
        inf = memory // INFERENCE_BYTES_PER_PARAM
        train = memory // TRAINING_BYTES_PER_PARAM
        problems = []
        if abs(memory - guide_total) > TOLERANCE * guide_total:
            problems.append(f"total memory: {gpus} x {gpu.memory_gb:g} GB (vendor) = {memory / 1e12:.2f} TB, "
                            f"the guide says {guide_total / 1e12:.2f} TB")
        if abs(inf - guide_inf) > TOLERANCE * inf:
            problems.append(f"inference at FP8 (1 byte/param) gives {fmt_count(inf)} parameters, "
                            f"the guide says {fmt_count(round(guide_inf))}")
        if abs(train - guide_train) > TOLERANCE * train:
            problems.append(f"training at 16 bytes/param gives {fmt_count(train)} parameters, "
                            f"the guide says {fmt_count(round(guide_train))}")
        rows.append(GuideRow(instance_type=name, gpus=gpus, memory_bytes=memory, guide_memory_bytes=round(guide_total),
                             inference_params=inf, training_params=train, guide_inference_params=round(guide_inf),
                             guide_training_params=round(guide_train), disagreements=problems))
    return rows
