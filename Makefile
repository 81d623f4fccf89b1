# rackfit: `make help` lists the targets.
PYTHON ?= python3
# the package (operator/) and the test harness (harness/: control plane, simulated fleet; never shipped)
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/harness:$(PYTHONPATH)

.DEFAULT_GOAL := help
.PHONY: image test-real help install test unit bench bench-cluster bench-scale demo-cli crds crds-check k8s-bin cluster-up cluster-down dev-up dev-down demo kind-up kind-down chart chart-check
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## Install rackfit with the operator and test extras into the current Python
	$(PYTHON) -m pip install -q -e '.[operator,test]'

test: ## Unit tests, then e2e tests on the local control plane (builds it once)
	$(PYTHON) -m pytest -q --e2e

unit: ## Unit tests only (seconds; no cluster)
	$(PYTHON) -m pytest -q

bench: ## Estimator accuracy (H200, public training), its fitted constants re-derived, planner latency, placement policy (docs/ tables)
	$(PYTHON) bench/accuracy.py
	$(PYTHON) bench/public_training.py
	$(PYTHON) bench/calibrate.py
	$(PYTHON) bench/public_serving.py
	$(PYTHON) bench/planner_speed.py
	$(PYTHON) bench/placement_policy.py --rate 40

bench-cluster: k8s-bin ## Benchmarks on a local control plane: operator throughput, webhook latency (minutes)
	$(PYTHON) bench/operator_throughput.py 1000
	$(PYTHON) bench/webhook_latency.py 500 20

bench-scale: k8s-bin ## The operator on 64, 1,000 and 5,000 simulated GPU nodes (about 40 min; docs/scale.md)
	$(PYTHON) bench/scale.py --sizes 64,1000,5000 --workloads 1000 --restart

demo-cli: ## Plan an example workload on the built-in catalog (no cluster)
	$(PYTHON) -m rackfit plan -f examples/llama-405b-bf16-serving.yaml

# --- CRD (generated from rackfit.api: v1alpha1.py spec, status.py status) ---
CRD_FILE := crds/rackfit.io_llmworkloads.yaml

crds: ## Regenerate crds/rackfit.io_llmworkloads.yaml from the pydantic models
	$(PYTHON) -m rackfit.api.crdgen --out-dir crds

crds-check: ## Fail if the committed CRD differs from what `make crds` generates
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m rackfit.api.crdgen --out-dir "$$tmp" 2>/dev/null && \
	diff -u $(CRD_FILE) "$$tmp/$(notdir $(CRD_FILE))" && echo "crds: up to date" || \
	{ echo "$(CRD_FILE) is out of date with rackfit.api: run \`make crds\`" >&2; exit 1; }

# --- local control plane (tools/k8s, devcluster) ---
K8S_BIN_DIR := $(or $(RACKFIT_K8S_BIN),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rackfit/k8s-v1.34.4/bin)
KIND_CLUSTER ?= rackfit
KIND_FLEET ?= gb200-4x=2,gd-8xh100ib-i128=1
KIND_KUBECONFIG := $(CURDIR)/.rackfit/kind/kubeconfig

k8s-bin: ## Build etcd, kube-apiserver, kube-scheduler, kubectl, kubelet, kube-proxy, helm, promtool, prometheus (cached)
	@tools/k8s/build.sh >/dev/null

test: k8s-bin

cluster-up: k8s-bin ## Start the local control plane + simulated GPU fleet (REAL_NODE=1: + a real node); prints export KUBECONFIG=...
	@$(PYTHON) -m devcluster up $(if $(REAL_NODE),--real-node)
	@echo "kubectl: $(K8S_BIN_DIR)/kubectl" >&2

cluster-down: ## Stop the local control plane and delete .rackfit/cluster
	@$(PYTHON) -m devcluster down

dev-up: k8s-bin ## cluster-up + the CRDs + the operator in the background (logs in .rackfit/cluster/logs)
	@$(PYTHON) -m devcluster dev-up

dev-down: ## Stop the operator and the local control plane; delete .rackfit/cluster
	@$(PYTHON) -m devcluster dev-down

demo: k8s-bin ## dev-up, then examples/demo/ (NVL72, HGX, suspended Job): Placed, and where the pods landed
	@$(PYTHON) -m devcluster demo

kind-up: ## Create a kind cluster labelled like the fleet (needs Docker/Podman/nerdctl)
	@command -v kind >/dev/null || { echo "kind not found (go install sigs.k8s.io/kind@latest); it also needs a container engine" >&2; exit 1; }
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	kind create cluster --name $(KIND_CLUSTER) --config tools/k8s/kind.yaml --kubeconfig $(KIND_KUBECONFIG)
	$(PYTHON) -m devcluster label --kubeconfig $(KIND_KUBECONFIG) --fleet $(KIND_FLEET)
	@echo "export RACKFIT_E2E_KUBECONFIG=$(KIND_KUBECONFIG)"

kind-down: ## Delete the kind cluster made by kind-up
	kind delete cluster --name $(KIND_CLUSTER)
	rm -rf $(dir $(KIND_KUBECONFIG))

# --- the operator image and a real node (tools/image, harness/devcluster/realnode.py; docs/helm.md) ---
image: ## Build the operator image rackfit:<version> (tools/image/build.sh; starts a container engine if none runs)
	@tools/image/build.sh >/dev/null

test-real: k8s-bin ## The chart on a real node (builds the image): pods, probes, peering, webhooks, Prometheus alerts, uninstall (root)
	$(PYTHON) -m pytest -q -p no:cacheprovider --e2e tests/real

# --- Helm chart (charts/rackfit; docs/helm.md) ---

chart: ## Regenerate the chart's generated parts: RBAC rules, LLMWorkload CRD, catalog copy
	$(PYTHON) -m rackfit.operator.chartgen

chart-check: ## Fail on stale generated chart files; helm lint; chart and alert unit tests (promtool)
	$(PYTHON) -m rackfit.operator.chartgen --check
	$(K8S_BIN_DIR)/helm lint --strict charts/rackfit
	$(PYTHON) -m pytest -q tests/unit/test_chart.py tests/unit/test_alerts.py
