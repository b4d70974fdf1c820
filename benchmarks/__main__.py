"""`python -m benchmarks …` runs the benchmark command (benchmarks/cli.py)."""

from benchmarks.cli import app

app()
