# The project's entry points. `make up` runs the whole system on its defaults; `make test` runs
# every test. Every target goes through the venv that `make setup` builds.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
ONNXRUNTIME_EXTRA ?= cpu

# A local MovieLens mirror is used when one sits beside the checkout (CI's ../shared/data);
# otherwise the data is downloaded from GroupLens and checked against its checksums.
MOVIELENS_MIRROR ?= $(if $(wildcard ../shared/data/ml-100k),$(abspath ../shared/data),)
export MOVIELENS_MIRROR
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: help setup up data test lint clean monitor monitor-check dashboards export-onnx serve-triton bench-triton gpu-check

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(ONNXRUNTIME_EXTRA),dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with its dev tools

data: $(STAMP) ## Fetch and preprocess the MovieLens data (dvc repro prepare)
	dvc repro prepare

up: data ## Run the whole system on its defaults

test: $(STAMP) ## Run the whole test suite (slow integration tests included)
	$(BIN)/pytest

lint: $(STAMP) ## Ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: ## Remove build outputs (keeps data and the venv)
	rm -rf model_store/*.mar triton_repo/*/[0-9]*/ .pytest_cache

monitor: $(STAMP) ## Drift report of the logged requests (SINCE=2024-05-01T00:00:00 UNTIL=...)
	movierec monitor drift $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL))

monitor-check: $(STAMP) ## promtool checks of Prometheus config, alert rules (+ unit tests), dashboards
	promtool check config docker/prometheus/prometheus.yml
	promtool check rules docker/prometheus/alert_rules.yml
	cd docker/prometheus && promtool test rules alert_rules_test.yml
	$(BIN)/python docker/grafana/generate_dashboards.py --check

dashboards: $(STAMP) ## Regenerate docker/grafana/dashboards/*.json
	$(BIN)/python docker/grafana/generate_dashboards.py

export-onnx: $(STAMP) ## Export SAE, RBM and the hybrid blend to ONNX for Triton (dvc repro export_onnx)
	dvc repro export_onnx

serve-triton: export-onnx ## Start the bundled tritonserver on CPU (HTTP 8000, gRPC 8001, metrics 8002)
	movierec serve triton

bench-triton: export-onnx ## Triton gRPC latency/throughput next to in-process onnxruntime
	$(BIN)/python benchmarks/triton_bench.py

gpu-check: ## On a machine with an NVIDIA GPU: onnxruntime-gpu parity and throughput
	benchmarks/gpu_check.sh
