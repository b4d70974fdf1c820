"""Write a profile report as JSON and as a PNG chart (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ragjet.obs.profile import PERCENTILES, ProfileReport


def write_json(report: ProfileReport, path: Path, context: Mapping[str, object] | None = None) -> None:
    """The report (and `context`: settings, workload) as indented JSON, written atomically."""
    body = {**(context or {}), "report": report.to_json()}
    _write_atomically(path, json.dumps(body, indent=2).encode())


def write_chart(report: ProfileReport, path: Path, title: str = "ragjet profile") -> None:
    """Two panels: each stage's share of the total time, and its P50/P90/P99 latency (ms, log scale)."""
    from matplotlib.figure import Figure  # a bare Figure draws on Agg and never opens a window

    stages = [s for s in report.stages if s.share > 0 or s.p99_ms > 0]
    names = [s.stage for s in stages]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    share_axes, latency_axes = figure.subplots(1, 2)

    colors = ["tab:red" if s.stage == report.bottleneck else "tab:blue" for s in stages]
    share_axes.barh(names, [100 * s.share for s in stages], color=colors)
    share_axes.invert_yaxis()  # pipeline order, top to bottom
    share_axes.set_xlabel("share of total time (%)")
    share_axes.set_title(f"bottleneck: {report.bottleneck}")

    width = 0.8 / len(PERCENTILES)
    for i, q in enumerate(PERCENTILES):
        values = [max(getattr(s, f"p{q}_ms"), 1e-3) for s in stages]  # log scale needs positive bars
        latency_axes.bar([x + (i - 1) * width for x in range(len(stages))], values, width, label=f"P{q}")
    latency_axes.set_xticks(range(len(stages)), names, rotation=30)
    latency_axes.set_yscale("log")
    latency_axes.set_ylabel("ms")
    latency_axes.legend()
    latency_axes.set_title(
        f"{report.num_requests} requests, concurrency {report.concurrency}, {report.requests_per_s:.2f} req/s"
    )
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, format="png", dpi=100)
    temporary.replace(path)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
