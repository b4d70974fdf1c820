"""Every CPU level's paths against the fp32 torch reference, on any host: the kernel parity tests and the
quantisation tests again, in processes narrowed to each level below this host's (ragjet's policy, torch's
dispatch and oneDNN alike). On an AVX-512 host that is the AVX2 path (bf16 weight-only layers, fp32 dense
prefill, the AVX2 kernel build) and the generic one (fp32, dense, baseline kernel build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.isa import narrowed_env, narrower_isas

HERE = Path(__file__).parent
RUNS = {
    "kernels": [str(HERE / "test_llm_cpu_kernels.py"), "-k", "matches or scores_exactly or build_is_made"],
    "quantisation": [str(HERE / "test_llm_quantize.py")],
    "fused decode": [str(HERE / "test_llm_cpu_decode.py"), "-k", "python_layers_return"],
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("isa", narrower_isas())
def test_a_narrower_level_passes_the_parity_tests(isa: str, run: str) -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *RUNS[run]]
    result = subprocess.run(command, env=narrowed_env(isa), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
