"""Stand-ins for dcgm-exporter and a vLLM server's /metrics, for tests/real/test_observed.py (issue 21).

No GPU, dcgm-exporter or vLLM runs here, so one HTTP server on the host serves what they would serve
for the pods of placed workloads: the metric names, label names and units are theirs, from their source,
and nothing else is invented. The test sets the figures (`Exporters.gpus`, `Exporters.engines`).

- `/dcgm`: dcgm-exporter's GPU text. Field names, types and help from etc/default-counters.csv
  (`DCGM_FI_DEV_FB_FREE`, `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_RESERVED`, "Framebuffer memory ... (in
  MiB)"); each line as internal/pkg/rendermetrics/render_metrics.go's gpuMetricsFormat renders it:
  `gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`, then its labels in key order, which
  with the Kubernetes pod mapping on (`--kubernetes`, internal/pkg/transformation/kubernetes.go and
  const.go) are `container`, `namespace` and `pod` of the pod the kubelet gave the GPU to. Per GPU, in
  MiB; `DCGM_FI_DEV_FB_TOTAL` is not served (not in the default field set).
- `/vllm`: vLLM's `vllm:cache_config_info`, the info gauge vllm/v1/metrics/loggers.py `log_metrics_info`
  makes of `CacheConfig.metrics_info()` (vllm/config/cache.py: every field as a string, "None" when
  unset, including `num_gpu_blocks`, `block_size`, `kv_cache_size_tokens` and `kv_cache_max_concurrency`)
  plus `engine`; and `vllm:kv_cache_usage_perc{engine,model_name}` (a fraction, 1 = 100%). A real vLLM's
  series get `namespace` and `pod` from the scrape of its own pod (a PodMonitor); the workloads' pods here
  are bound to simulated nodes and have no address, so this stand-in writes the pod's `namespace` and
  `pod` itself and is scraped with honorLabels, which gives Prometheus the same series.

`monitors()` returns the ServiceMonitor of each (dcgm-exporter's as its Helm chart makes it: honorLabels,
port `metrics`), and `objects()` the Service and Endpoints they select, pointing at this server, so the
Prometheus of tests/real discovers and scrapes them through the same ServiceMonitor-derived config as
the operator (devcluster.prometheus.scrape_config).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAMESPACE = "gpu-telemetry"
DCGM_FIELDS = (  # etc/default-counters.csv (FB_RESERVED from releases that list it)
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB)."),
)


@dataclass
class GPU:
    """One GPU a pod holds, as dcgm-exporter on its node reports it."""

    namespace: str
    pod: str
    container: str
    hostname: str          # the node (dcgm-exporter's NODE_NAME)
    index: int
    model_name: str        # NVML's name, e.g. "NVIDIA H100 80GB HBM3"
    total_mib: int
    used_mib: int
    reserved_mib: int = 512

    def labels(self) -> str:
        uuid = f"GPU-{zlib.crc32(self.hostname.encode()):08x}-0000-4000-8000-{self.index:012x}"
        return (f'gpu="{self.index}",UUID="{uuid}",pci_bus_id="00000000:{0x18 + self.index:02X}:00.0",'
                f'device="nvidia{self.index}",modelName="{self.model_name}",Hostname="{self.hostname}",'
                f'container="{self.container}",namespace="{self.namespace}",pod="{self.pod}"')


@dataclass
class Engine:
    """One vLLM server (one DP engine) in a pod, with the KV cache it allocated."""

    namespace: str
    pod: str
    model_name: str
    kv_cache_tokens: int
    max_model_len: int
    block_size: int = 16
    gpu_memory_utilization: float = 0.92

    def cache_config(self) -> dict[str, str]:
        """CacheConfig.metrics_info(): its fields as strings, in declaration order."""
        blocks = self.kv_cache_tokens // self.block_size
        return {"block_size": str(self.block_size), "gpu_memory_utilization": str(self.gpu_memory_utilization),
                "cache_dtype": "auto", "is_attention_free": "False", "num_gpu_blocks_override": "None",
                "sliding_window": "None", "enable_prefix_caching": "True", "prefix_caching_hash_algo": "sha256",
                "mamba_cache_dtype": "auto", "mamba_ssm_cache_dtype": "auto",
                "num_gpu_blocks": str(blocks), "num_cpu_blocks": "None",
                "kv_cache_size_tokens": str(blocks * self.block_size),
                "kv_cache_max_concurrency": str(blocks * self.block_size / self.max_model_len),
                "kv_sharing_fast_prefill": "False", "kv_cache_memory_bytes": "None"}


@dataclass
class Exporters:
    """The server (`start`/`stop`) and the figures it serves; change `gpus`/`engines` under `lock`."""

    host: str
    gpus: list[GPU] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scrapes: dict[str, int] = field(default_factory=lambda: {"/dcgm": 0, "/vllm": 0})
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def dcgm(self) -> str:
        with self.lock:
            gpus = list(self.gpus)
        out = []
        for name, help_ in DCGM_FIELDS:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
            for g in gpus:
                value = {"DCGM_FI_DEV_FB_USED": g.used_mib, "DCGM_FI_DEV_FB_RESERVED": g.reserved_mib,
                         "DCGM_FI_DEV_FB_FREE": g.total_mib - g.used_mib - g.reserved_mib}[name]
                out.append(f"{name}{{{g.labels()}}} {value}")
        return "\n".join(out) + "\n"

    def vllm(self) -> str:
        with self.lock:
            engines = list(self.engines)
        info = ["# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
                "# TYPE vllm:cache_config_info gauge"]
        usage = ["# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
                 "# TYPE vllm:kv_cache_usage_perc gauge"]
        for e in engines:
            pod = f'namespace="{e.namespace}",pod="{e.pod}"'  # what the scrape of its pod would add
            labels = ",".join(f'{k}="{v}"' for k, v in {**e.cache_config(), "engine": "0"}.items())
            info.append(f"vllm:cache_config_info{{{labels},{pod}}} 1.0")
            usage.append(f'vllm:kv_cache_usage_perc{{engine="0",model_name="{e.model_name}",{pod}}} 0.0')
        return "\n".join(info + usage) + "\n"

    def start(self) -> Exporters:
        exporters = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                render = {"/dcgm": exporters.dcgm, "/vllm": exporters.vllm}.get(self.path)
                if render is None:
                    self.send_error(404)
                    return
                body = render().encode()
                exporters.scrapes[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="exporters", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- what Prometheus discovers ----------------------------------------------------------------
    def monitors(self) -> tuple[dict, dict]:
        """dcgm-exporter's ServiceMonitor (its chart's: honorLabels, port `metrics`) and the vLLM one."""
        def monitor(name: str, path: str) -> dict:
            return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                             "namespaceSelector": {"matchNames": [NAMESPACE]},
                             "endpoints": [{"port": "metrics", "path": path, "honorLabels": True}]}}
        return monitor("dcgm-exporter", "/dcgm"), monitor("vllm", "/vllm")

    def objects(self, port: int) -> list[dict]:
        """A Service without selector and its Endpoints at this server, per monitor."""
        out: list[dict] = []
        for name in ("dcgm-exporter", "vllm"):
            meta = {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": name}}
            out.append({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                        "spec": {"ports": [{"name": "metrics", "port": port, "targetPort": port}]}})
            out.append({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                        "subsets": [{"addresses": [{"ip": self.host}], "ports": [{"name": "metrics", "port": port}]}]})
        return out
