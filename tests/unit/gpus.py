"""GPUs the unit tests estimate on, as the catalog's types carry them (memoryMiB: what CUDA reports)."""

from __future__ import annotations

from rackfit.catalog.types import GPU

H100 = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")
L40S = GPU(model="L40S", product="L40S", memoryGB=48, memoryMiB=46068, architecture="ada")
