"""`python -m benchmarks`: the suite command that `make bench` runs from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from benchmarks.cli import SUITES, app

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_suite_is_refused_before_anything_runs() -> None:
    result = CliRunner().invoke(app, ["nosuch"])
    assert result.exit_code == 2
    assert "unknown suite 'nosuch'" in result.output


def test_python_m_benchmarks_lists_every_suite() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in SUITES)
