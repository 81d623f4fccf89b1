"""`python -m devcluster up|down|status|dev-up|dev-down|demo|label`: behind `make cluster-up` and friends.

`up` starts a detached `ControlPlane` in the state dir (default `.rackfit/cluster`, or
$RACKFIT_CLUSTER_DIR), applies the fleet and prints `export KUBECONFIG=<path>` as the only line on
stdout (so `eval "$(python -m devcluster up)"` works); progress goes to stderr.
`dev-up` is `up`, then the CRDs in crds/ and `rackfit operator --standalone` in the background
(a component of the control plane: logs/operator.log, stopped by `down`/`dev-down`).
`demo` is `dev-up`, then examples/demo/ in namespace rackfit-demo, waiting until every workload
is Placed, and a table of where the pods of each target were bound.
`label` gives the nodes of an existing cluster (kind) the fleet's GPU labels and capacity.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from devcluster import addons, binaries, realnode
from devcluster.controlplane import (
    REPO,
    STATE_FILE,
    ControlPlane,
    ControlPlaneError,
    api_client,
    python_env,
)
from devcluster.fleet import DEFAULT_FLEET, apply_fleet, build_nodes, label_nodes, parse_fleet
from devcluster.ports import free_port
from devcluster.waiting import WaitTimeout, wait_established, wait_for
from rackfit import __version__
from rackfit.errors import CatalogError
from rackfit.names import GPU
from rackfit.units import count

_DEFAULT_FLEET_TEXT = ",".join(f"{k}={v}" for k, v in DEFAULT_FLEET.items())
OPERATOR = "operator"  # the component name: logs/operator.log
_OPERATOR_SETTLE_SECONDS = 3.0
DEMO_NAMESPACE = "rackfit-demo"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    plane = _cluster(args)
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _cluster(args: argparse.Namespace) -> ControlPlane:
    """The running control plane in the state dir, or a freshly started one with the fleet."""
    fleet = parse_fleet(args.fleet)
    state_dir = args.state_dir.resolve()
    if (state_dir / STATE_FILE).exists():
        running = ControlPlane.attach(state_dir)
        components = running.components()
        if all(alive for name, alive in components.items() if name != OPERATOR):
            _say(f"already running: {running.server} (state in {state_dir})")
            return running
        _say(f"removing a stopped control plane's leftovers in {state_dir}")
        _stop(running)
    started = time.monotonic()
    real_node = getattr(args, "real_node", False)
    kueue = getattr(args, "kueue", False)
    plane = ControlPlane(state_dir, detach=True, node_ip=realnode.host_ip() if real_node else None,
                         kueue=kueue).start()
    try:
        with api_client(plane.kubeconfig) as api:
            from kubernetes import client

            apply_fleet(client.CoreV1Api(api), build_nodes(fleet))
            if kueue:  # the simulated fleet's topology for Kueue's TAS
                client.CustomObjectsApi(api).create_cluster_custom_object(
                    "kueue.x-k8s.io", "v1beta2", "topologies", addons.kueue_topology())
        if real_node:
            _start_real_node(plane)
    except BaseException:
        _stop(plane)
        raise
    nodes = sum(fleet.values())
    _say(f"control plane {binaries.K8S_VERSION} at {plane.server} with {nodes} simulated nodes "
         f"({time.monotonic() - started:.1f}s); logs in {plane.log_dir}")
    return plane


def _start_real_node(plane: ControlPlane) -> None:
    """A real node (kubelet + containerd) beside the simulated fleet, with the operator image if built."""
    engine = realnode.engine()
    node = realnode.RealNode(plane, data_dir=plane.data_dir.with_name(plane.data_dir.name + "-node"))
    node.record()
    node.start(engine)
    image = f"rackfit:{__version__}"
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode == 0:
        node.load_image(engine, image)
        _say(f"real node {node.name}: loaded {image} from {engine}")
    else:
        _say(f"real node {node.name}: no {image} in {engine} to load (make image)")
    _say(f"real node {node.name} Ready, tainted {realnode.TAINT['key']}={realnode.TAINT['value']}:NoSchedule")


def _stop(plane: ControlPlane) -> None:
    """Stop a control plane, draining and stopping its real node first if it has one."""
    if node := realnode.RealNode.recorded(plane):
        node.stop()
    plane.stop()


def _kubectl(
    plane: ControlPlane, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    kubectl = binaries.require("kubectl")["kubectl"]
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "KUBECACHEDIR": str(plane.data_dir / "kubecache")}
    out = subprocess.run([str(kubectl), *args], input=input, capture_output=True, text=True, env=env, timeout=180)
    if check and out.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)} failed:\n{out.stderr.strip()}")
    return out


def _crd_files(crd_dir: Path) -> list[Path]:
    files = sorted(crd_dir.glob("*.yaml"))
    if files:
        return files
    # the CRD is generated from the pydantic spec; a fresh checkout may not have run the generator
    _say(f"no CRDs in {crd_dir}: generating them with python -m rackfit.api.crdgen --out-dir {crd_dir}")
    subprocess.run([sys.executable, "-m", "rackfit.api.crdgen", "--out-dir", str(crd_dir)], cwd=REPO,
                   env=python_env(), check=True)
    return sorted(crd_dir.glob("*.yaml"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_or_free(port: int, what: str) -> int:
    if _port_free(port):
        return port
    free = free_port()
    _say(f"port {port} is taken: operator {what} on :{free} instead")
    return free


def _metrics_probe(port: int):
    def probe() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.status == 200
    return probe


def _start_operator(plane: ControlPlane, args: argparse.Namespace) -> None:
    if plane.components().get(OPERATOR):
        _say(f"operator already running (log: {plane.log_dir / 'operator.log'})")
        return
    port, webhook_port = _port_or_free(args.metrics_port, "metrics"), _port_or_free(args.webhook_port, "webhook")
    # Webhooks in url mode: the operator serves them on loopback and registers the configurations
    # itself (removed again when it stops cleanly, which `down` does before stopping the API server).
    env = {**python_env(), "KUBECONFIG": str(plane.kubeconfig), "RACKFIT_METRICS_PORT": str(port),
           "RACKFIT_REPLAN_SECONDS": str(args.replan_seconds), "RACKFIT_WEBHOOKS": "url",
           "RACKFIT_WEBHOOK_HOST": "127.0.0.1", "RACKFIT_WEBHOOK_PORT": str(webhook_port)}
    started = time.monotonic()
    log = plane.log_dir / "operator.log"
    plane.add_process(OPERATOR, [sys.executable, "-m", "rackfit", "operator", "--standalone"],
                      _metrics_probe(port), env=env)
    # The metrics server starts in kopf's startup handler, before the watches and the webhook server:
    # an operator that dies right after it must not be reported as running.
    deadline = time.monotonic() + _OPERATOR_SETTLE_SECONDS
    while time.monotonic() < deadline:
        if not plane.components().get(OPERATOR):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise ControlPlaneError(f"the operator exited right after starting; last lines of {log}:\n{tail}")
        time.sleep(0.2)
    _say(f"operator running ({time.monotonic() - started:.1f}s): metrics http://127.0.0.1:{port}/metrics, "
         f"webhooks https://127.0.0.1:{webhook_port}, log {log}")


def _dev(args: argparse.Namespace) -> ControlPlane:
    started = time.monotonic()
    plane = _cluster(args)
    crds = _crd_files(args.crds)
    for f in crds:
        _kubectl(plane, "apply", "--server-side", "--force-conflicts", "-f", str(f))
    names = [d["metadata"]["name"] for f in crds for d in yaml.safe_load_all(f.read_text())
             if d and d.get("kind") == "CustomResourceDefinition"]
    wait_established(functools.partial(_kubectl, plane, check=False), *names)
    _say(f"CRDs established: {', '.join(names)}")
    _start_operator(plane, args)
    _say(f"dev cluster ready in {time.monotonic() - started:.1f}s; kubectl: {binaries.bin_dir() / 'kubectl'}")
    return plane


def _dev_up(args: argparse.Namespace) -> int:
    plane = _dev(args)
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    plane = _dev(args)
    ns = args.namespace
    files = sorted(args.manifests.glob("*.yaml"))
    if not files:
        raise ControlPlaneError(f"no manifests in {args.manifests}")
    # A second run: wait out the deletion of a previous demo's namespace, then reuse or create it.
    wait_for(lambda: _kubectl(plane, "get", "namespace", ns, "-o", "jsonpath={.metadata.deletionTimestamp}",
                              check=False).stdout == "", 180, f"namespace {ns} to finish deleting", interval=1)
    _kubectl(plane, "create", "namespace", ns, check=False)  # AlreadyExists on a second run is fine
    for f in files:  # create what is missing; never re-apply over what the operator patched
        out = _kubectl(plane, "create", "-n", ns, "-f", str(f), check=False)
        errors = [line for line in out.stderr.splitlines() if line.strip() and "AlreadyExists" not in line]
        if out.returncode != 0 and errors:
            raise ControlPlaneError(f"kubectl create -f {f} failed:\n" + "\n".join(errors))
        exists = [f"{f.name}: exists, left as it is" for line in out.stderr.splitlines() if "AlreadyExists" in line]
        _say("\n".join(filter(None, [out.stdout.strip(), *exists])))
    placed = _kubectl(plane, "wait", "--for=condition=Placed", "llmw", "--all", "-n", ns, "--timeout=120s", check=False)
    if placed.returncode != 0:
        _say(f"not every workload was Placed within 120 s:\n{placed.stderr.strip()}\n"
             f"operator log: {plane.log_dir / 'operator.log'}")
    print(_kubectl(plane, "get", "llmw", "-A").stdout.rstrip())
    print()
    ok = _print_bindings(plane, ns, [d for f in files for d in yaml.safe_load_all(f.read_text())
                                     if d and d.get("kind") == "LLMWorkload"])
    _say(f"demo done in {time.monotonic() - started:.1f}s; `make dev-down` stops everything")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0 if ok and placed.returncode == 0 else 1


def _get_json(plane: ControlPlane, *args: str) -> dict:
    return json.loads(_kubectl(plane, "get", *args, "-o", "json").stdout)


def _print_bindings(plane: ControlPlane, ns: str, workloads: list[dict]) -> bool:
    """For each workload's target: its pods, once the patched ones are bound, with their node's labels."""
    nodes = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in _get_json(plane, "nodes")["items"]}
    rows = [("WORKLOAD", "TARGET", "POD", "GPUS", "NODE", "INSTANCE-TYPE", "GPU.CLIQUE")]
    ok = True
    for w in workloads:
        name, target = w["metadata"]["name"], w["spec"].get("target")
        if not target:
            continue
        kind = target["kind"]
        placement = (_get_json(plane, "llmw", name, "-n", ns).get("status") or {}).get("placement") or {}
        want, pinned = placement.get("nodes") or 1, placement.get("nodeSelector") or {}
        selector = f"rackfit.io/workload={name}"  # on every target's pod template once placed (LWS has no selector)

        def patched_pods(selector=selector, want=want, pinned=pinned):
            # the pods of the patched template: bound, not being deleted, with rackfit's node selector
            pods = [p for p in _get_json(plane, "pods", "-n", ns, "-l", selector)["items"]
                    if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName")
                    and pinned.items() <= (p["spec"].get("nodeSelector") or {}).items()]
            return pods if pinned and len(pods) >= want else None
        try:
            pods = wait_for(patched_pods, 60, f"{count(want, 'patched pod')} of {kind} {target['name']} bound",
                            interval=0.5)
        except WaitTimeout as e:
            _say(str(e))
            ok = False
            pods = _get_json(plane, "pods", "-n", ns, "-l", selector)["items"]
        for p in pods:
            node = p["spec"].get("nodeName") or "-"
            labels = nodes.get(node, {})
            gpus = (p["spec"]["containers"][0].get("resources", {}).get("limits") or {}).get(GPU, "-")
            rows.append((name, f"{kind}/{target['name']}", p["metadata"]["name"], gpus, node,
                         labels.get("node.kubernetes.io/instance-type", "-"), labels.get("nvidia.com/gpu.clique", "-")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return ok


def _down(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    if not (state_dir / STATE_FILE).exists():
        if state_dir.exists():  # leftovers of a plane whose starter was killed before recording it
            shutil.rmtree(state_dir)
            _say(f"no control plane recorded; removed {state_dir}")
        else:
            _say(f"no control plane recorded in {state_dir}")
        return 0
    _stop(ControlPlane.attach(state_dir))
    _say(f"stopped; removed {state_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    if not (state_dir / STATE_FILE).exists():
        _say(f"not running (no state in {state_dir})")
        return 1
    plane = ControlPlane.attach(state_dir)
    components = plane.components()
    for name, alive in components.items():
        print(f"{name:24} {'running' if alive else 'STOPPED'}")
    print(f"{'server':24} {plane.server}\n{'kubeconfig':24} {plane.kubeconfig}")
    return 0 if all(components.values()) else 1


def _label(args: argparse.Namespace) -> int:
    from kubernetes import client

    with api_client(args.kubeconfig) as api:
        core = client.CoreV1Api(api)
        workers = sorted(n.metadata.name for n in core.list_node().items
                         if "node-role.kubernetes.io/control-plane" not in (n.metadata.labels or {}))
        for real, simulated in label_nodes(core, workers, parse_fleet(args.fleet)).items():
            _say(f"{real}: labelled as {simulated}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.split("\n\n")[0])
    default_dir = Path(os.environ.get("RACKFIT_CLUSTER_DIR", ".rackfit/cluster"))
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane and the simulated fleet (detached)")
    up.add_argument("--fleet", help=f"TYPE=COUNT,... (default {_DEFAULT_FLEET_TEXT})")
    up.add_argument("--real-node", action="store_true",
                    help="also join a real node (kubelet, containerd; root) for the operator's pods")
    dev = sub.add_parser("dev-up", help="up, then the CRDs and the operator in the background")
    for p in (up, dev):
        p.add_argument("--kueue", action="store_true",
                       help="also run Kueue (sigs.k8s.io/kueue) with a Topology of the fleet (block/rack/host)")
    demo = sub.add_parser("demo", help="dev-up, then examples/demo/; waits until Placed and shows where pods landed")
    for p in (dev, demo):
        p.add_argument("--fleet", help=f"TYPE=COUNT,... (default {_DEFAULT_FLEET_TEXT})")
        p.add_argument("--crds", type=Path, default=REPO / "crds", help="directory of CRD YAML files")
        p.add_argument("--metrics-port", type=int, default=9090, help="operator metrics (a free one if taken)")
        p.add_argument("--webhook-port", type=int, default=9443, help="operator webhooks (a free one if taken)")
        p.add_argument("--replan-seconds", type=float, default=5.0, help="RACKFIT_REPLAN_SECONDS for the operator")
    demo.add_argument("--manifests", type=Path, default=REPO / "examples" / "demo")
    demo.add_argument("-n", "--namespace", default=DEMO_NAMESPACE)
    dev.set_defaults(fn=_dev_up)
    demo.set_defaults(fn=_demo)
    for name, fn, help_text in (("down", _down, "stop it (and the operator) and delete its state"),
                                ("dev-down", _down, "the same as down"),
                                ("status", _status, "show whether its components run")):
        sub.add_parser(name, help=help_text).set_defaults(fn=fn)
    up.set_defaults(fn=_up)
    for p in sub.choices.values():
        p.add_argument("--state-dir", type=Path, default=default_dir, help=f"default {default_dir}")
    label = sub.add_parser("label", help="label an existing cluster's worker nodes like the fleet (kind)")
    label.add_argument("--kubeconfig", type=Path, required=True)
    label.add_argument("--fleet", required=True, help="TYPE=COUNT,... with at most one node per worker")
    label.set_defaults(fn=_label)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (binaries.BinariesMissing, ControlPlaneError, CatalogError, ValueError, WaitTimeout,
            realnode.RealNodeUnavailable) as e:
        _say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
