# Two commands: `make demo` (set up, build the toy pool if missing, run the main search)
# and `make test` (set up, run every test). Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: demo test install toy clean

$(STAMP): pyproject.toml
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

test: $(STAMP)
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) toy runs .pytest_cache
