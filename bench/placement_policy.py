"""Best fit against first fit on the same trace: the planner's two fit policies (planner.fit:
`FirstFit`, `BestFit`) on its capacity accounting (planner.inventory), with the operator's queue rule
(strict FIFO per instance type): a burst of 500 workloads of mixed sizes onto a 5,000-GPU simulated
fleet, then a live stream of arrivals and departures.

Fleet: 40 GB200 NVL72 racks (18 nodes x 4 GPUs), 200 HGX H100 and 65 HGX H200 nodes (8 GPUs each).
Printed: GPUs allocated, the largest job one NVL72 rack could take, and workloads waiting, over time;
then averages. Usage: python bench/placement_policy.py [--seed 1] [--burst 500] [--hours 48] [--rate 60]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics

from rackfit.planner.fit import BestFit, FirstFit, FitPolicy
from rackfit.planner.inventory import Domain, Inventory, NodeInfo, Reservation

GB200, H100, H200 = "gb200-4x", "gd-8xh100ib-i128", "gd-8xh200ib-i128"
CLIQUE, HOST = "nvidia.com/gpu.clique", "kubernetes.io/hostname"
# (instance type, pods, GPUs per pod, weight): most jobs small, a few whole racks
SIZES = [(GB200, 1, 1, 8), (GB200, 1, 4, 8), (GB200, 2, 4, 10), (GB200, 4, 4, 6), (GB200, 8, 4, 4),
         (GB200, 12, 4, 3), (GB200, 18, 4, 2), (H100, 1, 1, 10), (H100, 1, 2, 8), (H100, 1, 4, 8),
         (H100, 1, 8, 10), (H200, 1, 8, 5), (H200, 1, 4, 4)]


def fleet(fit: FitPolicy) -> Inventory:
    inv = Inventory(fit=fit)
    for r in range(40):
        for i in range(18):
            inv.set_node(f"gb-{r}-{i}", NodeInfo(GB200, Domain(CLIQUE, f"rack-{r:02d}"), 4))
    for itype, n in ((H100, 200), (H200, 65)):
        for i in range(n):
            inv.set_node(f"{itype}-{i}", NodeInfo(itype, Domain(HOST, f"{itype}-{i:03d}"), 8))
    return inv


def trace(seed: int, burst: int, hours: float, rate: float) -> list[tuple[float, int, tuple, float]]:
    """(arrival hour, id, size, duration hours): `burst` at t=0, then about `rate` an hour."""
    rng = random.Random(seed)
    weights = [w for *_, w in SIZES]
    out, t, i = [], 0.0, 0
    while i < burst or t < hours:
        if i >= burst:
            t += rng.expovariate(rate)
        size = rng.choices(SIZES, weights)[0][:3]
        out.append((0.0 if i < burst else t, i, size, rng.expovariate(1 / 8)))
        i += 1
    return [x for x in out if x[0] < hours]


def largest_rack_job(inv: Inventory) -> int:
    return max((sum(1 for f in frees if f >= 4) * 4 for frees in inv.domains(GB200).values()), default=0)


def simulate(fit: FitPolicy, jobs: list, hours: float, step: float = 2.0) -> list[tuple[float, int, int, int]]:
    inv = fleet(fit)
    events = [(t, 0, i) for t, i, _, _ in jobs]  # (time, kind 0 arrive / -1 depart, job)
    heapq.heapify(events)
    by_id = {i: (size, dur) for _, i, size, dur in jobs}
    waiting: list[int] = []  # in arrival order
    samples, next_sample = [], 0.0

    def try_place() -> None:
        blocked: set[str] = set()
        for i in list(waiting):
            (itype, pods, gpus), dur = by_id[i]
            if itype in blocked:
                continue
            domain = inv.find_domain(itype, pods, gpus)
            if domain is None:
                blocked.add(itype)  # strict FIFO per instance type, as the operator
                continue
            inv.reserve(("sim", str(i)), Reservation(itype, domain, pods, gpus))
            waiting.remove(i)
            heapq.heappush(events, (now + dur, -1, i))

    while events and events[0][0] <= hours:
        now, kind, i = heapq.heappop(events)
        if kind == 0:
            waiting.append(i)
        else:
            inv.forget(("sim", str(i)))
        try_place()
        upcoming = events[0][0] if events else hours
        while next_sample < upcoming and next_sample <= hours:  # the state between events
            used = sum(u for (_, _), (_, u) in inv.usage().items())
            samples.append((next_sample, used, largest_rack_job(inv), len(waiting)))
            next_sample += step
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--hours", type=float, default=48)
    parser.add_argument("--rate", type=float, default=60, help="arrivals per hour after the burst (mean 8 h each)")
    args = parser.parse_args()
    jobs = trace(args.seed, args.burst, args.hours, args.rate)
    runs = {fit.name: simulate(fit, jobs, args.hours) for fit in (FirstFit(), BestFit())}
    total = 40 * 72 + 265 * 8
    print(f"{len(jobs)} workloads ({args.burst} at once, then {args.rate:g} an hour) on {total} GPUs, "
          f"seed {args.seed}\n")
    print("| hour | GPUs allocated first / best | largest NVL72 job first / best | waiting first / best |")
    print("|---:|---:|---:|---:|")
    for a, b in zip(*runs.values(), strict=True):
        if a[0] % 6 == 0:
            print(f"| {a[0]:.0f} | {a[1]} / {b[1]} | {a[2]} / {b[2]} | {a[3]} / {b[3]} |")
    print("\n| policy | mean GPUs allocated | mean largest NVL72 job (GPUs) | mean waiting |")
    print("|---|---:|---:|---:|")
    for fit, s in runs.items():
        print(f"| {fit} fit | {statistics.mean(x[1] for x in s):.0f} ({statistics.mean(x[1] for x in s) / total:.0%}) "
              f"| {statistics.mean(x[2] for x in s):.1f} | {statistics.mean(x[3] for x in s):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
