# rackfit: `make help` lists the targets.
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/operator:$(PYTHONPATH)

.DEFAULT_GOAL := help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## Install rackfit with the operator and test extras into the current Python
	$(PYTHON) -m pip install -q -e '.[operator,test]'

test: ## Unit tests, then e2e tests on the local control plane (builds it once)
	$(PYTHON) -m pytest -q --e2e

unit: ## Unit tests only (seconds; no cluster)
	$(PYTHON) -m pytest -q

# --- local control plane (tools/k8s, rackfit.devcluster) ---
