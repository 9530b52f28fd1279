# divrec: `make train` (installs .venv when missing, then runs python train.py), `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export WANDB_MODE ?= offline
export WANDB_SILENT := true
export PYTHONUNBUFFERED := 1
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help install train test test-slow test-full mutants lint format bench bench-peers bench-scale clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[sweeps,dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install divrec with all extras (CPU torch pinned by constraints.txt)

train: $(STAMP) ## run the main job: python train.py $(ARGS)
	$(BIN)/python train.py $(ARGS)

test: $(STAMP) ## fast test suite (< 10 min on 2 cores)
	WANDB_MODE=disabled $(BIN)/python -m pytest -m "not slow" -n 2 --timeout 600 $(PYTEST_ARGS)

test-slow: $(STAMP) ## only the @pytest.mark.slow tests (determinism, resume, caches, DDP training)
	WANDB_MODE=disabled $(BIN)/python -m pytest -m slow -n 2 --timeout 1800 $(PYTEST_ARGS)

test-full: $(STAMP) ## all tests including @pytest.mark.slow
	WANDB_MODE=disabled $(BIN)/python -m pytest -n 2 --timeout 1800 $(PYTEST_ARGS)

mutants: $(STAMP) ## known bugs applied to a temporary copy: the fast tests must catch each (ARGS="--list")
	$(BIN)/python -m tests.mutants $(ARGS)

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## benchmarks (writes experiments/benchmarks/README.md)
	$(BIN)/python -m experiments.benchmarks.run

bench-peers: $(STAMP) ## divrec vs RecBole, whole processes on one split (builds RecBole's venv; ARGS="--models ease --rounds 1")
	$(BIN)/python -m experiments.benchmarks.peers $(ARGS)

bench-scale: $(STAMP) ## cost per stage vs shop size up to ml-25m (writes experiments/scale/README.md; ARGS="--sizes 300k 1.5m")
	OMP_NUM_THREADS=1 $(BIN)/python -m experiments.scale.run $(ARGS)

clean: ## remove caches and outputs (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache .ruff_cache
