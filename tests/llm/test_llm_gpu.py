"""The device check's correctness part as tests: on a CUDA device, the engine's greedy tokens in fp32 equal the
CPU's for fresh prefill, prefix-cache hits, chunked prefill, batched decode (CUDA graphs) and speculative verify,
and bf16 logits stay within tolerance of fp32. Skipped without a GPU (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.gpu_check import SMOLLM2, TINY, correctness, write_hf_dir

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("shape", [TINY, SMOLLM2], ids=["tiny", "smollm2-shaped"])
def test_cuda_matches_the_cpu_for_every_step_kind(shape: object, tmp_path: Path) -> None:
    report = correctness(write_hf_dir(tmp_path / "model", shape), shape, "cuda")  # type: ignore[arg-type]
    assert report["passed"], report
