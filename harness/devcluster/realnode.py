"""`RealNode`: one real Kubernetes node joined to a local `ControlPlane`, for running the operator's image.

Used by `python -m devcluster up --real-node` (`make cluster-up REAL_NODE=1`) and the fixtures of
tests/real/. Beside the simulated GPU fleet (plain Node objects, `fleet`), this node runs containers:

- containerd from Debian (its own instance: root, state, socket and CNI config under `data_dir`, never
  docker's), with its CRI plugin, runc, and `restrict_oom_score_adj` (these VMs refuse a negative
  oom_score_adj, which fails every sandbox otherwise);
- the CNI bridge, host-local and portmap plugins from Debian (`containernetworking-plugins`): bridge
  `rackfit0`, pods on POD_CIDR, reachable from the host;
- the kubelet and kube-proxy of the control plane's release (tools/k8s/build.sh), cgroupfs on cgroup v1;
  kube-proxy (iptables) routes Service ClusterIPs on the host: the pods reach the API server as
  10.0.0.1, and the API server reaches the webhooks' Service;
- the pause image: Debian's static `catatonit -P` in a `FROM scratch` image, tagged as the sandbox
  image (nothing can be pulled here); other images are loaded from the container engine
  (`load_image`).

The node is registered with the taint TAINT (NoSchedule), so only pods that tolerate it (the operator's)
land on it. Authentication is simplified for a test machine: the kubelet and kube-proxy use the admin
kubeconfig, and the kubelet's own API allows anonymous requests (`kubectl logs` through the API
server works). Everything runs as root.

`stop()` drains before it stops: it cordons the node, deletes its pods and waits until the kubelet
has stopped their containers (so CNI releases their addresses and network namespaces), then stops
the kubelet and kube-proxy (`kube-proxy --cleanup` removes its iptables rules), kills any task left
through containerd, stops containerd and its shims, unmounts what is left under `data_dir`, deletes
the bridge and `data_dir`. Processes are components of the control plane, so they also die with it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import yaml

from devcluster import binaries
from devcluster.controlplane import REPO, ControlPlane, api_client
from devcluster.ports import free_port
from devcluster.waiting import wait_for

NODE_NAME = "rackfit-real-0"
TAINT = {"key": "rackfit.io/real-node", "value": "system", "effect": "NoSchedule"}
TOLERATION = {"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": "NoSchedule"}
POD_CIDR = "10.88.0.0/24"
BRIDGE = "rackfit0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NAMESPACE = "k8s.io"  # containerd namespace of the CRI plugin
STATE_FILE = "realnode.json"  # in a detached plane's state dir
# what each host command comes from, for the error that names what is missing
HOST_TOOLS = {
    "/usr/bin/containerd": "containerd (Debian package containerd, or docker.io)",
    "/usr/bin/ctr": "ctr (Debian package containerd)",
    "/usr/sbin/runc": "runc (Debian package runc)",
    "/usr/lib/cni/bridge": "CNI plugins (Debian package containernetworking-plugins)",
    "/usr/lib/cni/host-local": "CNI plugins (Debian package containernetworking-plugins)",
    "/usr/bin/catatonit": "catatonit, the pause process (Debian package catatonit)",
    "/usr/sbin/iptables": "iptables (Debian package iptables)",
}


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run a real node (not root, a missing binary or package, no engine)."""


def host_ip() -> str:
    """The address this host uses towards its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


def engine() -> str:
    """The container engine command (docker or podman), started if needed (tools/image/engine.sh)."""
    out = subprocess.run([str(REPO / "tools" / "image" / "engine.sh"), "start"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RealNodeUnavailable(f"no container engine: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


def check_host() -> dict[str, Path]:
    """The kubelet and kube-proxy paths; raises `RealNodeUnavailable` naming everything missing."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the kubelet, containerd and CNI need it)")
    missing += [what for path, what in HOST_TOOLS.items() if not os.access(path, os.X_OK)]
    try:
        bins = binaries.require("kubelet", "kube-proxy")
    except binaries.BinariesMissing as e:
        missing.append(str(e))
        bins = {}
    if missing:
        raise RealNodeUnavailable("a real node needs: " + "; ".join(dict.fromkeys(missing)) +
                                  " (apt-get install containerd runc containernetworking-plugins catatonit iptables)")
    return bins


class RealNode:
    """`RealNode(plane).start()` joins one node to `plane` (started with `node_ip=host_ip()`)."""

    def __init__(self, plane: ControlPlane, name: str = NODE_NAME, data_dir: Path | None = None):
        if not plane.node_ip:
            raise ValueError("start the ControlPlane with node_ip=realnode.host_ip() for a real node")
        self.plane = plane
        self.name = name
        # not under the plane's data dir: it holds mounts, and the plane deletes its dir recursively
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="rackfit-node-"))
        self.socket = self.data_dir / "containerd.sock"

    @classmethod
    def recorded(cls, plane: ControlPlane) -> RealNode | None:
        """The node that `record()` wrote into a detached plane's state dir, if any."""
        try:
            state = json.loads((plane.data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        node = cls.__new__(cls)
        node.plane, node.name, node.data_dir = plane, state["name"], Path(state["data_dir"])
        node.socket = node.data_dir / "containerd.sock"
        return node

    def record(self) -> None:
        """Note this node in the plane's state dir (`python -m devcluster down` stops it first)."""
        (self.plane.data_dir / STATE_FILE).write_text(json.dumps({"name": self.name, "data_dir": str(self.data_dir)}))

    # --- start ---------------------------------------------------------------------------------
    def start(self, engine_cmd: str | None = None) -> RealNode:
        bins = check_host()
        try:
            self._start(bins, engine_cmd or engine())
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, bins: dict[str, Path], engine_cmd: str) -> None:
        d = self.data_dir
        for sub in ("cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "cni/net.d/10-rackfit.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "rackfit", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(d / "cni/ipam"),
                          "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=2))
        (d / "containerd.toml").write_text(_containerd_config(d))
        self.plane.add_process("containerd", ["/usr/bin/containerd", "--config", d / "containerd.toml"],
                               lambda: self._ctr("version").returncode == 0)
        self.load_image(engine_cmd, _pause_image(engine_cmd))

        healthz = free_port()
        (d / "kubelet.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.plane.node_ip, "port": free_port(), "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [], "failSwapOn": False, "localStorageCapacityIsolation": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "registerWithTaints": [TAINT], "podLogsDir": str(d / "pod-logs"),
            "resolvConf": "/etc/resolv.conf", "clusterDomain": "cluster.local",
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi"},
        }))
        self.plane.add_process("kubelet", [
            bins["kubelet"], f"--config={d / 'kubelet.yaml'}", f"--kubeconfig={self.plane.kubeconfig}",
            f"--hostname-override={self.name}", f"--node-ip={self.plane.node_ip}",
            f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet/pki'}",
            f"--node-labels={TAINT['key']}={TAINT['value']}",
        ], _http_ok(f"http://127.0.0.1:{healthz}/healthz"))
        proxy_health = free_port()
        self.plane.add_process("kube-proxy", [
            bins["kube-proxy"], f"--kubeconfig={self.plane.kubeconfig}", f"--hostname-override={self.name}",
            "--proxy-mode=iptables", f"--cluster-cidr={POD_CIDR}", "--conntrack-max-per-core=0",
            f"--healthz-bind-address=127.0.0.1:{proxy_health}", f"--metrics-bind-address=127.0.0.1:{free_port()}",
        ], _http_ok(f"http://127.0.0.1:{proxy_health}/healthz"))
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        from kubernetes import client

        with api_client(self.plane.kubeconfig) as api:
            core = client.CoreV1Api(api)

            def ready():
                try:
                    node = core.read_node(self.name)
                except client.ApiException:
                    return None
                conds = {c.type: c.status for c in node.status.conditions or []}
                return node if conds.get("Ready") == "True" else None
            node = wait_for(ready, timeout, f"node {self.name} Ready")
            # No node-lifecycle controller runs (the simulated fleet sends no heartbeats), so nothing
            # lifts the not-ready taint the node registered with: lift it now that it is Ready.
            taints = [t for t in node.spec.taints or [] if t.key != "node.kubernetes.io/not-ready"]
            core.patch_node(self.name, {"spec": {"taints": [
                {"key": t.key, "value": t.value, "effect": t.effect} for t in taints]}})

    def load_image(self, engine_cmd: str, ref: str) -> None:
        """Copy `ref` from the container engine into this node's containerd (`save | ctr import`)."""
        save = subprocess.Popen([engine_cmd, "save", ref], stdout=subprocess.PIPE)
        out = self._ctr("images", "import", "-", stdin=save.stdout)
        save.stdout.close()
        if save.wait() != 0 or out.returncode != 0:
            raise RuntimeError(f"loading {ref} into {self.name}'s containerd: {out.stderr}")

    def _ctr(self, *args: str, stdin=None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/bin/ctr", "--address", str(self.socket), "-n", NAMESPACE, *args],
                              stdin=stdin, capture_output=True, text=True, timeout=timeout)

    # --- stop ----------------------------------------------------------------------------------
    def stop(self, timeout: float = 90.0) -> None:
        """Drain, stop the node's processes, and remove what they left on the host (idempotent)."""
        alive = self.plane.components()
        if alive.get("kubelet") and alive.get("kube-apiserver", True):
            try:
                self._drain(timeout)
            except Exception as e:  # still stop everything below
                print(f"realnode: drain of {self.name} incomplete: {e}")
        self.plane.stop_component("kubelet")
        self.plane.stop_component("kube-proxy")
        if (kube_proxy := binaries.bin_dir() / "kube-proxy").exists():
            subprocess.run([str(kube_proxy), "--cleanup", "--proxy-mode=iptables"], capture_output=True, timeout=60)
        if self.socket.exists() and alive.get("containerd"):
            self._kill_tasks()
        self.plane.stop_component("containerd")
        self._kill_shims()
        _unmount_under(self.data_dir)
        _remove_kubelet_chains()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _drain(self, timeout: float) -> None:
        from kubernetes import client

        with api_client(self.plane.kubeconfig) as api:
            core = client.CoreV1Api(api)
            core.patch_node(self.name, {"spec": {"unschedulable": True}})
            selector = f"spec.nodeName={self.name}"
            for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=5)
            wait_for(lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items, timeout,
                     f"the pods of {self.name} to be deleted by its kubelet")
            core.delete_node(self.name)

    def _kill_tasks(self) -> None:
        """Any container still running (the kubelet gone first): kill and delete it through containerd."""
        out = self._ctr("tasks", "ls", timeout=30)
        for line in out.stdout.splitlines()[1:]:
            task = line.split()[0]
            self._ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=30)
            self._ctr("tasks", "delete", "-f", task, timeout=30)

    def _kill_shims(self) -> None:
        """The runc shims of this node's containerd (they outlive it by design): found by its socket."""
        address = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                try:
                    os.kill(int(proc.name), 9)
                except ProcessLookupError:
                    pass


def _containerd_config(d: Path) -> str:
    return f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d / 'containerd.sock'}"
[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / 'cni/net.d'}"
"""


def _pause_image(engine_cmd: str) -> str:
    """PAUSE_IMAGE in the engine: Debian's static catatonit in pause mode, FROM scratch (built once)."""
    if subprocess.run([engine_cmd, "image", "inspect", PAUSE_IMAGE], capture_output=True).returncode == 0:
        return PAUSE_IMAGE
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy2("/usr/bin/catatonit", Path(ctx) / "pause")
        (Path(ctx) / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause", "-P"]\n')
        out = subprocess.run([engine_cmd, "build", "-q", "-t", PAUSE_IMAGE, ctx], capture_output=True, text=True,
                             env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if out.returncode != 0:
            raise RuntimeError(f"building {PAUSE_IMAGE}: {out.stderr}")
    return PAUSE_IMAGE


# iptables chains the kubelet makes and never removes (kube-proxy's go with `kube-proxy --cleanup`)
_KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def _remove_kubelet_chains() -> None:
    """Delete the kubelet's chains and the rules that jump to them, in every table, IPv4 and IPv6."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            for rule in rules:
                parts = rule.split()
                if parts[:1] == ["-A"] and parts[1] not in _KUBELET_CHAINS and \
                        any(f"-j {c}" in rule for c in _KUBELET_CHAINS):
                    subprocess.run([tool, "-t", table, "-D", *parts[1:]], capture_output=True)
            for chain in _KUBELET_CHAINS:
                if f"-N {chain}" in rules:
                    subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
                    subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def _unmount_under(d: Path) -> None:
    """Lazily unmount every mount below `d`, deepest first (pod volumes, overlay rootfs, shm)."""
    prefix = str(d.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _http_ok(url: str):
    import urllib.request

    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    return probe
