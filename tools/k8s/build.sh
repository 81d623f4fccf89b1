#!/usr/bin/env bash
# Builds the upstream control plane used by the e2e tests into a cache keyed by version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (Kubernetes $K8S_VERSION), etcd, helm, promtool;
#   kubelet and kube-proxy for the optional real node (harness/devcluster/realnode.py, `make test-real`);
#   the LeaderWorkerSet, JobSet and Kueue controllers with their CRDs (tools/k8s/lws, tools/k8s/jobset, tools/k8s/kueue).
# A second run with the cache present only checks that the binaries are there.
# Usage: tools/k8s/build.sh        -> prints the bin directory on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# `go mod tidy` marks modules reached only through `tool` lines as "// indirect", so match
# the module path in any require line rather than a particular layout.
modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$2"; }
K8S_VERSION=$(modver k8s.io/kubernetes "$here/go.mod")
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")
HELM_VERSION=$(modver helm.sh/helm/v3 "$here/helm/go.mod")
PROMETHEUS_MODULE=$(modver github.com/prometheus/prometheus "$here/prometheus/go.mod")  # v0.316.0 = Prometheus 3.16.0
LWS_VERSION=$(modver sigs.k8s.io/lws "$here/lws/go.mod")
JOBSET_VERSION=$(modver sigs.k8s.io/jobset "$here/jobset/go.mod")
KUEUE_VERSION=$(modver sigs.k8s.io/kueue "$here/kueue/go.mod")
for v in K8S_VERSION ETCD_VERSION HELM_VERSION PROMETHEUS_MODULE LWS_VERSION JOBSET_VERSION KUEUE_VERSION; do
  [ -n "${!v}" ] || { echo "[k8s-build] cannot read $v from tools/k8s go.mod files" >&2; exit 1; }
done
bin=${RACKFIT_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/rackfit/k8s-$K8S_VERSION/bin}
mkdir -p "$bin"
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { echo "[k8s-build] $*" >&2; }

build_k8s() {
  local vpkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local ld="-s -w"
  for p in $vpkg $cpkg; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [ -x "$bin/$cmd" ] && continue
    log "building $cmd $K8S_VERSION (cold: several minutes on 2 cores)"
    (cd "$here" && go build -trimpath -ldflags "$ld" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
}

build_etcd() {
  [ -x "$bin/etcd" ] && return
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  [ -x "$bin/helm" ] && return
  log "building helm $HELM_VERSION"
  local p=helm.sh/helm/v3/internal/version
  local ld="-s -w -X $p.version=$HELM_VERSION -X $p.gitTreeState=clean"
  for q in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld="$ld -X $q.k8sVersionMajor=1 -X $q.k8sVersionMinor=$minor"
  done
  (cd "$here/helm" && go build -trimpath -ldflags "$ld" -o "$bin/helm" helm.sh/helm/v3/cmd/helm)
}

# The Prometheus server for tests/real (harness/devcluster/prometheus.py): Debian's package has no
# Kubernetes service discovery. Its module tags v0.3MM.P are releases 3.MM.P.
build_prometheus() {
  [ -x "$bin/prometheus" ] && return
  local release; release=$(echo "$PROMETHEUS_MODULE" | awk -F. '{printf "%d.%d.%s", substr($2,1,1), substr($2,2)+0, $3}')
  log "building prometheus $release (module $PROMETHEUS_MODULE)"
  # only Kubernetes service discovery (Prometheus's build tags): the cloud SDKs of the others are most of a cold build
  (cd "$here/prometheus" && go build -trimpath -tags remove_all_sd,enable_kubernetes_sd \
     -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
     -o "$bin/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
}

fetch_promtool() {
  [ -x "$bin/promtool" ] && return
  log "extracting promtool from Debian's prometheus package"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download prometheus >/dev/null; }; } \
     && dpkg-deb -x prometheus_*.deb x && cp x/usr/bin/promtool "$bin/promtool")
  rm -rf "$tmp"
}

# The LeaderWorkerSet and JobSet controllers (harness/devcluster/addons.py runs them), each from its own
# module (their Kubernetes libraries are not $K8S_VERSION's), into addons/<name>-<version>/ beside bin/:
# the controller as `manager`, and the module's config/ (CRDs, webhook manifests) it is installed from.
addons=$(dirname "$bin")/addons
build_addon() {  # name module main-package version [go build flags...]
  local name=$1 mod=$2 pkg=$3 version=$4 out=$addons/$1-$4 src
  shift 4
  [ -x "$out/manager" ] && return
  log "building the $name controller $version"
  rm -rf "$out" && mkdir -p "$out"
  (cd "$here/$name" && go build -trimpath -ldflags "-s -w -X $mod/pkg/version.GitVersion=$version" "$@" \
     -o "$out/manager.tmp" "$pkg")
  src=$(cd "$here/$name" && go list -m -f '{{.Dir}}' "$mod")
  cp -r "$src/config" "$out/config" && chmod -R u+w "$out/config"
  mv "$out/manager.tmp" "$out/manager"
}

build_etcd
build_helm
fetch_promtool
build_k8s
build_prometheus
build_addon lws sigs.k8s.io/lws sigs.k8s.io/lws/cmd "$LWS_VERSION"
build_addon jobset sigs.k8s.io/jobset sigs.k8s.io/jobset "$JOBSET_VERSION"
# Kueue: with internal certificate management off, cmd/kueue/main.go reads its metrics certificate from
# the fixed path /etc/kueue/metrics/certs (a mounted Secret in a cluster), which a test machine lacks and
# an unprivileged user cannot create. The build compiles that one file, copied from the module with the
# path made $KUEUE_METRICS_CERT_DIR when set (the harness sets it), as package main of tools/k8s/kueue
# (kueue-main/, generated, not committed; Go refuses -overlay for files in the module cache); every other
# package is the module's own.
build_kueue() {
  local src out=$addons/kueue-$KUEUE_VERSION
  [ -x "$out/manager" ] && return
  src=$(cd "$here/kueue" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | awk -F'"' '/"Dir"/ {print $4}')
  mkdir -p "$here/kueue/kueue-main"
  sed 's|metricsCertPath := "/etc/kueue/metrics/certs"|metricsCertPath := "/etc/kueue/metrics/certs"; if d := os.Getenv("KUEUE_METRICS_CERT_DIR"); d != "" { metricsCertPath = d }|' \
    "$src/cmd/kueue/main.go" > "$here/kueue/kueue-main/main.go"
  grep -q KUEUE_METRICS_CERT_DIR "$here/kueue/kueue-main/main.go" || {
    log "kueue $KUEUE_VERSION: cmd/kueue/main.go no longer sets metricsCertPath as expected"; exit 1; }
  build_addon kueue sigs.k8s.io/kueue ./kueue-main "$KUEUE_VERSION"
}
build_kueue
for a in "lws-$LWS_VERSION" "jobset-$JOBSET_VERSION" "kueue-$KUEUE_VERSION"; do
  [ -x "$addons/$a/manager" ] || { log "missing $addons/$a/manager"; exit 1; }
done
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy helm promtool prometheus; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b"; exit 1; }
done
echo "$bin"
