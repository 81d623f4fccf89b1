"""Fit policies (pure): which NVLink domain a job of `nodes` x `gpus_per_node` GPUs goes to, given
what each domain has free (`Capacity.domains`). One interface, `FitPolicy.find_domain`; the
operator uses `BestFit`, `bench/placement_policy.py` replays a trace under each policy.

Every policy keeps a workload in the domain it already holds (`prefer`) while that still fits, so
re-planning never moves a running workload for a marginally better fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from rackfit.planner.nodes import Domain


class FitPolicy(ABC):
    """Chooses a domain among those that hold the job."""

    name: str  # as the benchmark prints it: "<name> fit"

    def find_domain(self, domains: Mapping[Domain, list[int]], nodes: int, gpus_per_node: int,
                    prefer: str | None = None) -> Domain | None:
        """A domain with `nodes` nodes of `gpus_per_node` free GPUs each (`domains`: domain -> free
        GPUs of each node): `prefer` (the value of a domain already holding the workload) while it
        fits, else the fitting domain of least `rank`, ties by domain name; None when none fits."""
        best: tuple[int, str, Domain] | None = None
        for domain, frees in domains.items():
            if sum(1 for f in frees if f >= gpus_per_node) < nodes:
                continue
            if prefer is not None and domain.value == prefer:
                return domain
            key = (self.rank(frees), domain.value, domain)
            if best is None or key < best:
                best = key
        return best[2] if best else None

    @abstractmethod
    def rank(self, frees: list[int]) -> int:
        """Order among fitting domains (lower first), from the free GPUs of each of its nodes."""


class BestFit(FitPolicy):
    """The domain with the fewest free GPUs that still holds the job, keeping whole domains free for
    large jobs (Kueue's BestFit)."""

    name = "best"

    def rank(self, frees: list[int]) -> int:
        return sum(f for f in frees if f > 0)


class FirstFit(FitPolicy):
    """The first fitting domain in name order (to compare against)."""

    name = "first"

    def rank(self, frees: list[int]) -> int:
        return 0
