#!/usr/bin/env bash
# The pure-Python (and a few binary) wheels the lent GPU machine lacks for `python -m benchmarks.gpu_check`, for
# its Python 3.12 image (torch, triton, numpy, tokenizers, safetensors, jinja2, rich, httpx are there already).
# Run once here; the device call carries `.whl` and starts with the install line the device README gives:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site:src || exit; python3 -m benchmarks.gpu_check --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
wheels=(pydantic==2.14.4 pydantic-core pydantic-settings==2.16.3 python-dotenv annotated-types typing-inspection
        typing-extensions gguf==0.19.0 faiss-cpu==1.15.1 bm25s==0.3.16)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${wheels[@]}"
du -sh .whl
