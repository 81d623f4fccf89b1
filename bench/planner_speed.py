"""Planner latency: one spec over the whole catalog, and with an inventory of 5,000 nodes.
Targets (issue 2): under 5 ms and under 50 ms. Usage: python bench/planner_speed.py"""

from __future__ import annotations

import statistics
import sys
import time

from rackfit.catalog import load_catalog
from rackfit.planner import Inventory, plan
from rackfit.spec import parse_spec

SPECS = {
    "llama-3.1-70b fp8 serving": dict(model={"preset": "llama-3.1-70b"}, workload="inference", precision="fp8",
                                      inference=dict(contextLength=8192, concurrency=32)),
    "llama-3.1-405b full training": dict(model={"preset": "llama-3.1-405b"}, workload="training",
                                         training=dict(sequenceLength=4096, activationCheckpointing="full")),
    "deepseek-v3 fp8 serving": dict(model={"preset": "deepseek-v3"}, workload="inference", precision="fp8",
                                    inference=dict(contextLength=32768, concurrency=16)),
    "qwen2.5-7b lora": dict(model={"preset": "qwen2.5-7b"}, workload="training",
                            training=dict(method="lora", microBatchSize=4, sequenceLength=4096)),
}


def inventory(n_nodes: int) -> Inventory:
    """A mixed fleet: NVL72 racks of 18 GB200 nodes and 8-GPU HGX hosts, some GPUs in use."""
    nodes = []
    for i in range(n_nodes):
        if i % 2:
            labels = {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": f"c.{i // 36}"}
            nodes.append((f"gb{i}", labels, 4, i % 5 == 0 and 4 or 0))
        else:
            labels = {"node.kubernetes.io/instance-type": "gd-8xh100ib-i128", "kubernetes.io/hostname": f"h{i}"}
            nodes.append((f"h{i}", labels, 8, (i % 3) * 4))
    return Inventory.from_nodes(nodes)


def timed(fn, repeat: int = 30) -> tuple[float, float]:
    fn()  # warm caches
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)


def main() -> int:
    catalog = load_catalog()
    inv = inventory(5000)
    print("| spec | catalog only p50 / max ms | with 5,000-node inventory p50 / max ms |")
    print("|---|---:|---:|")
    worst = [0.0, 0.0]
    for name, doc in SPECS.items():
        spec = parse_spec(doc)
        a = timed(lambda spec=spec: plan(spec, catalog))
        b = timed(lambda spec=spec: plan(spec, catalog, inv), repeat=10)
        worst = [max(worst[0], a[0]), max(worst[1], b[0])]
        print(f"| {name} | {a[0]:.1f} / {a[1]:.1f} | {b[0]:.1f} / {b[1]:.1f} |")
    ok = worst[0] < 5 and worst[1] < 50
    print(f"targets (p50 < 5 ms; < 50 ms with inventory): {'met' if ok else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
