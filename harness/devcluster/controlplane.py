"""`ControlPlane`: a real etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback.

Used by the e2e fixtures (as a context manager, torn down with the test session) and by
`python -m devcluster up|down|dev-up|dev-down` (detached, its state kept in a directory).
There are no kubelets: Nodes are plain API objects (see `fleet`), and the `pod-sim` component
(`podsim`) reports bound pods as Running and Ready and finalises deleted ones, as a kubelet would,
without running anything. kube-controller-manager runs every controller that works without
kubelets, cloud or volumes (`CONTROLLERS`); in particular no node-lifecycle controller, which
would taint and evict the simulated nodes for lack of heartbeats.
With `run_addons` (the default) the LeaderWorkerSet and JobSet controllers run beside them, with
their CRDs and webhooks (`addons`). With `compute_domains` (the default) the ComputeDomain CRD of
NVIDIA's DRA driver is installed and `compute-domain-sim` publishes what the driver would (channel
devices on the NVL72 nodes, each ComputeDomain's ResourceClaimTemplate: `computedomains`).

Every component runs in its own session so it can be stopped as a process group; its log is
`<data_dir>/logs/<name>.log`. An attached control plane is also stopped at interpreter exit, on
SIGTERM/SIGHUP, and (through PR_SET_PDEATHSIG) when the process that started it dies.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster import addons, binaries, computedomains
from devcluster.ports import free_port
from devcluster.waiting import WaitTimeout, wait_established, wait_for
from rackfit.certs import write_rsa_key, write_serving_pair

STATE_FILE = "state.json"
# Stopped in waves: clients (the operator, controllers, scheduler, pod-sim), then the API server, then etcd.
_SERVERS = ("kube-apiserver", "etcd")
# kube-controller-manager's controllers: the defaults, less those that need kubelets, a cloud or
# volume plugins. node-lifecycle-controller must stay off: the simulated nodes send no heartbeats
# or Leases, so it would mark them NotReady, taint them and evict their pods.
CONTROLLERS = ",".join(["*"] + [f"-{c}" for c in (
    "node-lifecycle-controller", "node-ipam-controller", "cloud-node-lifecycle-controller",
    "service-lb-controller", "node-route-controller", "ttl-controller",
    "persistentvolume-binder-controller", "persistentvolume-attach-detach-controller",
    "persistentvolume-expander-controller", "ephemeral-volume-controller",
    "persistentvolume-protection-controller", "persistentvolumeclaim-protection-controller",
    "certificatesigningrequest-signing-controller")])
_LOG_TAIL_LINES = 25


class ControlPlaneError(RuntimeError):
    """A component failed to start or the state directory is unusable; the message has its log tail."""


@dataclass
class _Component:
    name: str
    pid: int
    popen: subprocess.Popen | None = None  # None when re-attached from a state file
    exe: str = ""  # basename of argv[0] when it is not `name` (a Python process)
    started: int | None = None  # start time in clock ticks since boot (/proc/PID/stat field 22)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:  # a detached child: make sure the pid still belongs to our process before trusting it
            argv0 = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0]
            if Path(argv0.decode(errors="replace")).name != (self.exe or self.name):
                return False
            # "python" matches any Python process: a reused pid is told apart by its start time
            return self.started is None or _start_ticks(self.pid) == self.started
        except OSError:
            return False

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # the component leads its own session, so pgid == pid
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        try:
            wait_for(lambda: not self.alive(), timeout, f"{self.name} to exit")
            return True
        except WaitTimeout:
            return False


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command in (...) may hold spaces


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if the Python process that started it dies, even by SIGKILL."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _kubeconfig(server: str, ca_pem: bytes, user: str, token: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rackfit-dev", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "rackfit-dev", "context": {"cluster": "rackfit-dev", "user": user}}],
        "current-context": "rackfit-dev",
    })


class ControlPlane:
    """A local control plane. `with ControlPlane() as cp:` starts it; leaving the block stops it
    and deletes `data_dir`. With `detach=True` the processes outlive this Python process and
    `ControlPlane.attach(data_dir).stop()` ends them later."""

    def __init__(self, data_dir: Path | None = None, *, detach: bool = False, startup_timeout: float = 60.0,
                 node_ip: str | None = None, run_addons: bool = True, compute_domains: bool = True,
                 kueue: bool = False):
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="rackfit-cp-"))
        self.run_addons = run_addons  # the LeaderWorkerSet and JobSet controllers, CRDs and webhooks (`addons`)
        # the ComputeDomain CRD, the channel's DeviceClass, and the DRA driver's stand-in (`computedomains`)
        self.compute_domains = compute_domains
        self.kueue = kueue  # Kueue's controller, CRDs and webhooks, after the other addons (opt-in)
        # For a real node (realnode.RealNode): an address of this host that its kubelet and pods reach
        # the API server on. The API server then also listens there, advertises it as the `kubernetes`
        # Service's endpoint (kube-proxy routes 10.0.0.1 to it), mounts ServiceAccount tokens into pods
        # (the ServiceAccount admission plugin is on) and reaches kubelets at their InternalIP.
        self.node_ip = node_ip
        self.detach = detach
        self.startup_timeout = startup_timeout
        self.server = ""
        self._components: list[_Component] = []
        self._lock = threading.Lock()

    # --- paths -------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (a static token in `system:masters`)."""
        return self.data_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def apply_crds(self, path: Path, *names: str, timeout: float = 300) -> None:
        """Apply the CRDs in `path` server-side and wait until `names` are Established (waiting.wait_established,
        not `kubectl wait`, which gives up while a new CRD has no status yet)."""
        kubectl = binaries.require("kubectl")["kubectl"]

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(kubectl), "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                  text=True, timeout=120)
        applied = run("apply", "--server-side", "-f", str(path))
        if applied.returncode:
            raise ControlPlaneError(f"{path}: not applied: {applied.stderr.strip()}")
        wait_established(run, *names, timeout=timeout)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        bins = binaries.require("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
        if self.run_addons:
            addons.require()
        if self.kueue:
            addons.require((addons.KUEUE,))
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            # A running plane, or the leftovers of one killed hard; reusing its etcd data would mislead.
            raise ControlPlaneError(f"{self.data_dir} is not empty: stop that control plane "
                                    f"(python -m devcluster down --state-dir {self.data_dir}) or remove it")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.detach:
            _register(self)
        try:
            self._start(bins)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, bins: dict[str, Path]) -> None:
        # the data dir lives for one test session or one `cluster-up`
        names = ["127.0.0.1", "localhost"]
        if self.node_ip:  # pods verify the API server as 10.0.0.1 / kubernetes.default.svc
            names += [self.node_ip, "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                      "kubernetes.default.svc.cluster.local"]
        ca_cert, serving_cert, serving_key = write_serving_pair(self.data_dir / "pki", names,
                                                                validity=dt.timedelta(days=7))
        sa_key = write_rsa_key(self.data_dir / "pki" / "sa.key")
        admin_token, scheduler_token, kcm_token, sim_token = (secrets.token_hex(24) for _ in range(4))
        tokens = self.data_dir / "tokens.csv"
        # Static token file format: token,user,uid,"group1,group2". kube-controller-manager runs every
        # controller under its own identity (--use-service-account-credentials=false), so it gets
        # system:masters rather than the bootstrap role meant for per-controller ServiceAccounts.
        tokens.write_text(
            f'{admin_token},rackfit-admin,rackfit-admin,"system:masters"\n'
            f"{scheduler_token},system:kube-scheduler,system:kube-scheduler\n"
            f'{kcm_token},system:kube-controller-manager,system:kube-controller-manager,"system:masters"\n'
            f'{sim_token},rackfit-pod-sim,rackfit-pod-sim,"system:masters"\n')
        tokens.chmod(0o600)

        etcd_port, peer_port, api_port, sched_port, kcm_port = (free_port() for _ in range(5))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            bins["etcd"], f"--data-dir={self.data_dir / 'etcd'}", "--name=rackfit-dev",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=rackfit-dev=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level=warn",
        ], _http_ok(f"{etcd_url}/health", None, None))

        self.server = f"https://127.0.0.1:{api_port}"
        ca = ssl.create_default_context(cafile=str(ca_cert))
        real_node = [
            "--bind-address=0.0.0.0", f"--advertise-address={self.node_ip}",
            "--endpoint-reconciler-type=lease", "--kubelet-preferred-address-types=InternalIP",
        ] if self.node_ip else [
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            # Pods never run, so they need no token volume; and a pod created right after its
            # namespace must not race the controller that makes the `default` ServiceAccount.
            "--disable-admission-plugins=ServiceAccount",
            # A one-member "cluster": don't maintain the kubernetes Service endpoints.
            "--endpoint-reconciler-type=none",
        ]
        self._spawn("kube-apiserver", [
            bins["kube-apiserver"], f"--etcd-servers={etcd_url}",
            *real_node, f"--secure-port={api_port}",
            f"--cert-dir={ca_cert.parent}", f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}", f"--client-ca-file={ca_cert}",
            f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--service-account-issuer={self.server}", f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}", "--profiling=false",
        ], _http_ok(f"{self.server}/readyz", ca, admin_token))

        ca_pem = ca_cert.read_bytes()
        self.kubeconfig.write_text(_kubeconfig(self.server, ca_pem, "rackfit-admin", admin_token))
        sched_kubeconfig = self.data_dir / "kube-scheduler.kubeconfig"
        sched_kubeconfig.write_text(_kubeconfig(self.server, ca_pem, "system:kube-scheduler", scheduler_token))
        kcm_kubeconfig = self.data_dir / "kube-controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(_kubeconfig(self.server, ca_pem, "system:kube-controller-manager", kcm_token))
        sim_kubeconfig = self.data_dir / "pod-sim.kubeconfig"
        sim_kubeconfig.write_text(_kubeconfig(self.server, ca_pem, "rackfit-pod-sim", sim_token))
        for path in (self.kubeconfig, sched_kubeconfig, kcm_kubeconfig, sim_kubeconfig):
            path.chmod(0o600)
        # what needs only the API server starts together
        self._spawn_all([("kube-controller-manager", [
            bins["kube-controller-manager"], f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}", f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
            f"--controllers={CONTROLLERS}", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={sa_key}", f"--root-ca-file={ca_cert}",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10", "--concurrent-job-syncs=10",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ], _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", _insecure(), None), None), ("kube-scheduler", [
            bins["kube-scheduler"], f"--kubeconfig={sched_kubeconfig}",
            f"--authentication-kubeconfig={sched_kubeconfig}", f"--authorization-kubeconfig={sched_kubeconfig}",
            # Don't look up request-header CAs in kube-system: none are configured, and it logs errors forever.
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false",
        ], _http_ok(f"https://127.0.0.1:{sched_port}/readyz", _insecure(), None), None),
            ("pod-sim", [sys.executable, "-m", "devcluster.podsim", f"--kubeconfig={sim_kubeconfig}",
                         f"--ready-file={self.data_dir / 'pod-sim.ready'}"],
             (self.data_dir / "pod-sim.ready").exists, python_env())])
        self._write_state()
        if self.compute_domains:
            computedomains.install(binaries.require("kubectl")["kubectl"],
                                   {**os.environ, "KUBECONFIG": str(self.kubeconfig)})
            ready = self.data_dir / "compute-domain-sim.ready"
            self.add_process("compute-domain-sim", [sys.executable, "-m", "devcluster.computedomains",
                                                    f"--kubeconfig={sim_kubeconfig}", f"--ready-file={ready}"],
                             ready.exists, env=python_env())
        if self.run_addons:
            addons.start(self)
        if self.kueue:
            addons.start(self, addons=(addons.KUEUE,))

    def add_process(self, name: str, argv: list, probe, env: dict[str, str] | None = None) -> None:
        """Start one more process that lives and dies with this control plane (e.g. the operator of
        `dev-up`), wait until `probe()` is true, and record it in the state file. Its output goes to
        `logs/<name>.log`; `stop()` stops it before the API server."""
        self._spawn(name, argv, probe, env)
        self._write_state()

    def _spawn(self, name: str, argv: list, probe, env: dict[str, str] | None = None) -> None:
        self._spawn_all([(name, argv, probe, env)])

    def _spawn_all(self, specs: list[tuple[str, list, Any, dict[str, str] | None]]) -> None:
        """Start processes that need only what already runs, all at once, then wait until each is
        ready: their start-ups overlap instead of adding up."""
        started = []
        for name, argv, probe, env in specs:
            log = (self.log_dir / f"{name}.log").open("ab")
            with log:  # the child keeps its own descriptor
                popen = subprocess.Popen(
                    [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True, preexec_fn=None if self.detach else _die_with_parent)
            exe = Path(str(argv[0])).name
            component = _Component(name, popen.pid, popen, "" if exe == name else exe, _start_ticks(popen.pid))
            with self._lock:
                self._components.append(component)
            started.append((name, probe, component, popen))
        for name, probe, component, popen in started:
            try:
                wait_for(lambda c=component, p=probe: not c.alive() or p(), self.startup_timeout,
                         f"{name} to become ready")
            except WaitTimeout as e:
                raise ControlPlaneError(f"{e}\n{self._log_tail(name)}") from None
            if not component.alive():
                raise ControlPlaneError(f"{name} exited with code {popen.returncode} while starting\n"
                                        f"{self._log_tail(name)}")

    def add_processes(self, specs: list[tuple[str, list, Any, dict[str, str] | None]]) -> None:
        """`add_process` for several at once (started together, then each awaited)."""
        self._spawn_all(specs)
        self._write_state()

    def _log_tail(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return f"(no log at {path})"
        return f"last {len(lines)} lines of {path}:\n" + "\n".join(lines)

    def _write_state(self) -> None:
        state = {"server": self.server, "kubeconfig": str(self.kubeconfig),
                 "pids": {c.name: c.pid for c in self._components},
                 "exes": {c.name: c.exe for c in self._components if c.exe},
                 "started": {c.name: c.started for c in self._components if c.started is not None}}
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, data_dir: Path) -> ControlPlane:
        """The detached control plane recorded in `data_dir` (its processes may have died since)."""
        try:
            state = json.loads((Path(data_dir) / STATE_FILE).read_text())
        except (OSError, ValueError) as e:
            raise ControlPlaneError(f"no control plane state in {data_dir}: {e}") from None
        cp = cls(Path(data_dir), detach=True)
        cp.server = state["server"]
        exes, started = state.get("exes", {}), state.get("started", {})
        cp._components = [_Component(name, pid, exe=exes.get(name, ""), started=started.get(name))
                          for name, pid in state["pids"].items()]
        return cp

    def stop_component(self, name: str, timeout: float = 15.0) -> None:
        """Stop one component (TERM, wait, then KILL its process group), e.g. a real node's kubelet
        before its container runtime; `stop()` stops whatever is left."""
        with self._lock:
            found = [c for c in self._components if c.name == name]
            self._components = [c for c in self._components if c.name != name]
        for c in found:
            c.signal(signal.SIGTERM)
            if not c.wait(timeout):
                c.signal(signal.SIGKILL)
                c.wait(5.0)
        if found and self.detach:
            self._write_state()

    def components(self) -> dict[str, bool]:
        """Component name -> whether its process is alive."""
        with self._lock:
            return {c.name: c.alive() for c in self._components}

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every component (TERM, wait, then KILL the process group) and delete `data_dir`."""
        with self._lock:
            components, self._components = self._components, []
        clients = [c for c in components if c.name not in _SERVERS]
        for wave in (clients, *([c for c in components if c.name == s] for s in _SERVERS)):
            running = [c for c in wave if c.alive()]
            for c in running:
                c.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for c in running:
                if not c.wait(max(0.0, deadline - time.monotonic())):
                    c.signal(signal.SIGKILL)
                    c.wait(5.0)
        _unregister(self)
        shutil.rmtree(self.data_dir, ignore_errors=True)


REPO = Path(__file__).resolve().parents[2]


def python_env() -> dict[str, str]:
    """The environment for a Python child that must import this checkout's `rackfit` and `devcluster`."""
    roots = [str(REPO / "operator"), str(REPO / "harness")]
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*roots, path] if path else roots)}


def _http_ok(url: str, context: ssl.SSLContext | None, token: str | None):
    """A probe returning True once `url` answers 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def probe() -> bool:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2, context=context) as r:
            return r.status == 200
    return probe


def _insecure() -> ssl.SSLContext:
    # kube-scheduler serves /readyz with a certificate it makes up in memory; only liveness matters here.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- clean-up of attached control planes at exit and on SIGTERM/SIGHUP ------------------------
_live: set[ControlPlane] = set()
_hooks_installed = False


def _stop_all() -> None:
    for cp in list(_live):
        cp.stop()


def _on_signal(signum, _frame) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)  # then die of the same signal, as the sender intended
    os.kill(os.getpid(), signum)


def _register(cp: ControlPlane) -> None:
    global _hooks_installed
    _live.add(cp)
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:  # never replace a handler someone else installed
                signal.signal(sig, _on_signal)


def _unregister(cp: ControlPlane) -> None:
    _live.discard(cp)


def api_client(kubeconfig: Path, pool_size: int = 16):
    """A `kubernetes.client.ApiClient` for `kubeconfig`, with room for the fleet's parallel requests."""
    from kubernetes import client, config  # the operator extra; only needed once a cluster is in play

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)
