"""Benchmark results: one row type, a markdown table per suite, and machine-readable history.

Every suite returns ``BenchRow``s measured in the same run as its peer, so the ratio is honest.
``write_suite`` replaces that suite's section for this host (CPU model and ISA level) in docs/benchmarks.md,
leaving other hosts' sections beside it, draws the section's ragjet-vs-peer ratios as an SVG chart beside it
(docs/charts/), and appends the rows to docs/benchmarks.json, which keeps the history for regression tracking.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ragjet.hardware import ISA_ENV, host

# What a run narrowed to a smaller CPU sets (tests/support/isa.py): recorded with its figures.
NARROWING_ENV = (ISA_ENV, "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(slots=True)
class BenchRow:
    suite: str
    case: str  # what was run, e.g. "FlatIndex 1M batch=1"
    metric: str  # e.g. "p50 latency"
    value: float
    unit: str
    peer: str = ""  # the system measured side by side, if any
    peer_value: float | None = None
    higher_is_better: bool = True
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How many times better ragjet is than the peer (>1 means ragjet wins)."""
        if self.peer_value in (None, 0) or self.value == 0:
            return None
        assert self.peer_value is not None
        return self.value / self.peer_value if self.higher_is_better else self.peer_value / self.value


def host_label() -> str:
    """The CPU and the ISA level a run computed at: sections of different hosts sit side by side."""
    h = host()
    return f"{h.cpu_model}, {h.isa}{' (narrowed)' if h.forced else ''}"


def machine_description() -> str:
    """The CPU model, its ISA level and the flags that matter, cores, torch; what narrowed it, if anything."""
    h = host()
    desc = (f"{h.cpu_model} ({h.isa} level; flags {' '.join(h.flags)}; torch reads {h.torch_capability}), "
            f"{h.cores} cores, torch {torch.__version__}")  # fmt: skip
    narrowing = {k: os.environ[k] for k in NARROWING_ENV if os.environ.get(k)}
    if narrowing:
        desc += ", narrowed by " + " ".join(f"{k}={v}" for k, v in narrowing.items())
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def markdown_table(rows: list[BenchRow]) -> str:
    lines = [
        "| case | metric | ragjet | peer | peer value | ratio (×, >1 = ragjet better) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "–"
        lines.append(
            f"| {r.case} | {r.metric} | {_fmt(r.value)} {r.unit} | {r.peer or '–'} | "
            f"{_fmt(r.peer_value) + ' ' + r.unit if r.peer_value is not None else '–'} | {ratio} |"
        )
    return "\n".join(lines)


def write_suite(suite: str, title: str, rows: list[BenchRow], notes: str, out: Path) -> None:
    """Replace the suite's section of the markdown report and append its rows to the JSON history."""
    date, sha, machine = dt.date.today().isoformat(), _git_sha(), machine_description()
    key = f"{suite} on {host_label()}"  # one section per suite and host: other hosts' figures stay
    chart = out.parent / "charts" / f"{suite}-{re.sub(r'[^a-z0-9]+', '-', host_label().lower()).strip('-')}.svg"
    picture = f"![{title}: ratios to the peers](charts/{chart.name})\n\n" if ratio_chart(rows, chart, title) else ""
    section = (
        f"<!-- suite:{key} -->\n## {title} — {host_label()}\n\n"
        f"Measured {date} at {sha} on {machine}.\n\n{notes.strip()}\n\n{picture}{markdown_table(rows)}\n"
        f"<!-- /suite:{key} -->\n"
    )
    text = out.read_text() if out.exists() else "# ragjet benchmarks\n\nWritten by `make bench`.\n\n"
    pattern = re.compile(rf"<!-- suite:{re.escape(key)} -->.*?<!-- /suite:{re.escape(key)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)

    history = out.with_suffix(".json")
    records = json.loads(history.read_text()) if history.exists() else []
    for r in rows:
        rec = asdict(r) | {"ratio": r.ratio, "machine": machine, "date": date, "git_sha": sha}
        records.append(rec)
    history.write_text(json.dumps(records, indent=1) + "\n")


def ratio_chart(rows: list[BenchRow], path: Path, title: str) -> bool:
    """A bar per row with a peer: how many times better ragjet did (log scale, 1 = a tie); False if none has one."""
    from matplotlib.figure import Figure  # a bare Figure draws on Agg and never opens a window

    compared = [r for r in rows if r.ratio is not None]
    if not compared:
        return False
    ratios = [r.ratio for r in compared if r.ratio is not None]
    figure = Figure(figsize=(9, 0.35 * len(compared) + 1.2), layout="constrained")
    axes = figure.subplots()
    labels = [f"{r.case} · {r.metric} (vs {r.peer})" for r in compared]
    axes.barh(labels, ratios, color=["tab:green" if x >= 1 else "tab:red" for x in ratios])
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.invert_yaxis()
    axes.set_xlabel("× better than the peer (>1: ragjet better)")
    axes.set_title(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg")
    return True
