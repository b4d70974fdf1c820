"""The device check script runs end to end: on the CPU in its smoke mode here (tiny shapes), the same code the
lent GPU runs, so the one prepared device run cannot fail on a typo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_smoke_run_checks_every_step_kind_and_writes_its_figures(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["smoke"] and report["correctness"]["passed"], report["correctness"]
    assert set(report["correctness"]["cases"]) == {"fresh_prefill_and_batched_decode", "prefix_hit_prefill",
                                                   "chunked_prefill", "speculative_verify"}  # fmt: skip
    assert report["performance"]["decode_tok_s_16"] > 0 and report["performance"]["ttft_600_s"] > 0
    assert report["search"]["recall_at_1"] == 1.0 and report["search"]["single_p50_ms"] > 0
