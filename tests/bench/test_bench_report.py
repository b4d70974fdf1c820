"""A suite's section in docs/benchmarks.md gets its ratio chart: drawn from the rows that have a peer, linked
from the section, and replaced (not duplicated) when the suite runs again."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import BenchRow, write_suite


def test_a_suite_section_links_its_ratio_chart(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    rows = [BenchRow("embed", "query", "p50 latency", 5.0, "ms", "sentence-transformers", 7.5, higher_is_better=False),
            BenchRow("embed", "batch", "throughput", 300.0, "chunks/s", "sentence-transformers", 200.0),
            BenchRow("embed", "recall", "recall@5", 0.9, "")]  # fmt: skip
    write_suite("embed", "Embedding", rows, "notes", out)
    write_suite("embed", "Embedding", rows, "notes", out)
    text = out.read_text()
    charts = list((tmp_path / "charts").glob("embed-*.svg"))
    assert len(charts) == 1 and f"](charts/{charts[0].name})" in text and text.count("](charts/") == 1
    svg = charts[0].read_text()
    assert svg.startswith("<?xml") and "vs sentence-transformers" in svg


def test_no_chart_without_a_peer(tmp_path: Path) -> None:
    write_suite("profile", "Profile", [BenchRow("profile", "embed", "p50 latency", 5.0, "ms")], "n", tmp_path / "b.md")
    assert not (tmp_path / "charts").exists() and "](charts/" not in (tmp_path / "b.md").read_text()
