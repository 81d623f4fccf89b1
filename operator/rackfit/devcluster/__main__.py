"""`python -m rackfit.devcluster up|down|status|label`: the commands behind `make cluster-up` and friends.

`up` starts a detached `ControlPlane` in the state dir (default `.rackfit/cluster`, or
$RACKFIT_CLUSTER_DIR), applies the fleet and prints `export KUBECONFIG=<path>` as the only line on
stdout (so `eval "$(python -m rackfit.devcluster up)"` works); progress goes to stderr.
`label` gives the nodes of an existing cluster (kind) the fleet's GPU labels and capacity.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from rackfit.devcluster import binaries
from rackfit.devcluster.controlplane import STATE_FILE, ControlPlane, ControlPlaneError, api_client
from rackfit.devcluster.fleet import DEFAULT_FLEET, apply_fleet, build_nodes, label_nodes, parse_fleet
from rackfit.errors import CatalogError

_DEFAULT_FLEET_TEXT = ",".join(f"{k}={v}" for k, v in DEFAULT_FLEET.items())


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    fleet = parse_fleet(args.fleet)
    state_dir = args.state_dir.resolve()
    if (state_dir / STATE_FILE).exists():
        running = ControlPlane.attach(state_dir)
        if all(running.components().values()):
            _say(f"already running: {running.server} (state in {state_dir})")
            print(f"export KUBECONFIG={running.kubeconfig}")
            return 0
        _say(f"removing a stopped control plane's leftovers in {state_dir}")
        running.stop()
    started = time.monotonic()
    plane = ControlPlane(state_dir, detach=True).start()
    try:
        with api_client(plane.kubeconfig) as api:
            from kubernetes import client

            apply_fleet(client.CoreV1Api(api), build_nodes(fleet))
    except BaseException:
        plane.stop()
        raise
    nodes = sum(fleet.values())
    _say(f"control plane {binaries.K8S_VERSION} at {plane.server} with {nodes} simulated nodes "
         f"({time.monotonic() - started:.1f}s); logs in {plane.log_dir}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    if not (state_dir / STATE_FILE).exists():
        if state_dir.exists():  # leftovers of a plane whose starter was killed before recording it
            shutil.rmtree(state_dir)
            _say(f"no control plane recorded; removed {state_dir}")
        else:
            _say(f"no control plane recorded in {state_dir}")
        return 0
    ControlPlane.attach(state_dir).stop()
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
    parser = argparse.ArgumentParser(prog="python -m rackfit.devcluster", description=__doc__.split("\n\n")[0])
    default_dir = Path(os.environ.get("RACKFIT_CLUSTER_DIR", ".rackfit/cluster"))
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane and the simulated fleet (detached)")
    up.add_argument("--fleet", help=f"TYPE=COUNT,... (default {_DEFAULT_FLEET_TEXT})")
    for name, fn, help_text in (("down", _down, "stop it and delete its state"),
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
    except (binaries.BinariesMissing, ControlPlaneError, CatalogError, ValueError) as e:
        _say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
