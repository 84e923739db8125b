# The project's entry points. `make up` runs the whole system on its defaults; `make test` runs
# every test. Every target goes through the venv that `make setup` builds.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
ONNXRUNTIME_EXTRA ?= cpu
WEB_PORT ?= 5000
MLFLOW_PORT ?= 5001
MODEL ?= sae
TRIALS ?= 20

# A local MovieLens mirror is used when one sits beside the checkout (CI's ../shared/data);
# otherwise the data is downloaded from GroupLens and checked against its checksums.
MOVIELENS_MIRROR ?= $(if $(wildcard ../shared/data/ml-100k),$(abspath ../shared/data),)
export MOVIELENS_MIRROR
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: help setup system-deps up pipeline data train evaluate tune export export-torchserve \
	export-onnx serve serve-triton web down test lint clean bench bench-smoke soak soak-faults \
	bench-torchserve bench-triton gpu-check monitor monitor-check dashboards images compose-up docs

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

# --- environment ---------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(ONNXRUNTIME_EXTRA),dev,notebooks]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with its dev tools

system-deps: ## Debian packages the tests need: chromium (browser test), prometheus (promtool), alertmanager; root only
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# --- the pipeline (dvc.yaml) -----------------------------------------------------------------
pipeline: $(STAMP) ## Reproduce the whole DVC pipeline: data, training, evaluation, exports
	dvc repro

data: $(STAMP) ## Fetch and preprocess the MovieLens data (dvc repro prepare)
	dvc repro prepare

train: $(STAMP) ## Train SAE and RBM (MLflow-tracked)
	dvc repro train_sae train_rbm

evaluate: $(STAMP) ## Score SAE, RBM and the baselines (report: data/reports/evaluation.html)
	dvc repro evaluate

tune: $(STAMP) ## Optuna search, best params written to params.yaml (MODEL=sae|rbm TRIALS=20)
	movierec tune --model $(MODEL) --trials $(TRIALS) --write

export: export-torchserve export-onnx ## Build the .mar archives and the ONNX models

export-torchserve: $(STAMP) ## Build model_store/{sae,rbm,hybrid}.mar
	dvc repro export_torchserve

export-onnx: $(STAMP) ## Export SAE, RBM and the hybrid blend to ONNX for Triton
	dvc repro export_onnx

# --- serving ---------------------------------------------------------------------------------
# The pipeline logs to the MLflow server over HTTP (to DagsHub instead when its variables are
# set; an MLFLOW_TRACKING_URI of your own wins).
up: export MLFLOW_TRACKING_URI ?= $(if $(DAGSHUB_REPO_NAME),,http://127.0.0.1:$(MLFLOW_PORT))
up: mlflow pipeline serve web ## Run the whole system on its defaults: MLflow, pipeline, TorchServe, web app on :5000
	@echo "web app: http://127.0.0.1:$(WEB_PORT)   MLflow: http://127.0.0.1:$(MLFLOW_PORT)   (make down stops everything)"

.PHONY: mlflow notebooks
mlflow: $(STAMP) ## Start the MLflow tracking server on http://127.0.0.1:5001 (mlflow.db, mlruns/)
	movierec serve mlflow --port $(MLFLOW_PORT)

serve: export-torchserve ## Start TorchServe (dev config, loopback) and wait until the models answer
	movierec serve torchserve

serve-triton: export-onnx ## Start the bundled tritonserver on CPU (HTTP 8000, gRPC 8001, metrics 8002)
	movierec serve triton

web: $(STAMP) ## Start the web app on http://127.0.0.1:5000 (gunicorn; TorchServe backend by default)
	movierec serve web --port $(WEB_PORT)

down: ## Stop the web app, the model servers and MLflow (waits for them to exit)
	movierec serve stop --what all

# --- quality ---------------------------------------------------------------------------------
test: $(STAMP) ## Run the whole test suite (slow integration tests included)
	$(BIN)/pytest

lint: $(STAMP) ## Ruff lint and format check, import layering (lint-imports), types (mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy

notebooks: $(STAMP) ## JupyterLab on notebooks/ (data, model comparison, tuning) at 127.0.0.1:8888
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks

docs: $(STAMP) ## Regenerate docs/api.md and docs/configuration.md, build the site (MkDocs, strict) into .run/site
	$(BIN)/python docs/generate.py
	$(BIN)/mkdocs build --strict --quiet

clean: ## Remove build outputs (keeps data and the venv)
	rm -rf model_store/*.mar triton_repo/*/[0-9]*/ .pytest_cache

# --- benchmarks ------------------------------------------------------------------------------
bench: $(STAMP) ## Locust load tests of every scenario, report in benchmarks/results/load_report.md
	$(BIN)/python -m benchmarks.run_load --bench

bench-smoke: $(STAMP) ## A few seconds of every Locust scenario; fails on any request failure
	$(BIN)/python -m benchmarks.run_load --smoke

soak: $(STAMP) ## 50 users for 5 minutes against TorchServe + web; failures and server RSS
	$(BIN)/python -m benchmarks.run_load --soak

soak-faults: $(STAMP) ## 10 min of traffic, a fault a minute (servers killed, databases stopped); lost writes
	$(BIN)/python -m benchmarks.fault_soak

bench-torchserve: export-torchserve ## TorchServe HTTP latency/throughput next to the in-process model
	$(BIN)/python -m benchmarks.torchserve_bench

bench-triton: export-onnx ## Triton gRPC latency/throughput next to in-process onnxruntime
	$(BIN)/python -m benchmarks.triton_bench

gpu-check: ## On a machine with an NVIDIA GPU: onnxruntime-gpu parity and throughput
	benchmarks/gpu_check.sh

# --- monitoring ------------------------------------------------------------------------------
monitor: $(STAMP) ## Drift report of the logged requests (SINCE=2024-05-01T00:00:00 UNTIL=...)
	movierec monitor drift $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL))

monitor-check: $(STAMP) ## promtool checks of Prometheus config, alert rules (+ unit tests), dashboards
	promtool check config docker/prometheus/prometheus.yml
	promtool check rules docker/prometheus/alert_rules.yml
	cd docker/prometheus && promtool test rules alert_rules_test.yml
	$(BIN)/python docker/grafana/generate_dashboards.py --check

dashboards: $(STAMP) ## Regenerate docker/grafana/dashboards/*.json
	$(BIN)/python docker/grafana/generate_dashboards.py

# --- containers (need a Docker engine) -------------------------------------------------------
images: ## Build the Docker images (`make pipeline` first for model_store/*.mar)
	docker build -f docker/Dockerfile.torchserve -t movierec-torchserve .
	docker build -f docker/Dockerfile.web -t movierec-web .
	docker build -f docker/Dockerfile.training -t movierec-training .

compose-up: ## Start the whole stack with Docker Compose (docker/.env holds the secrets)
	docker compose -f docker/docker-compose.yml --env-file docker/.env up -d --build
