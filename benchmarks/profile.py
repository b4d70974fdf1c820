"""Profile benchmark: the demo workload as `ragjet profile` runs it, with its stage table and chart.

The shipped Python questions are asked over the demo collection (Python's language reference) in
process, at a fixed concurrency; the pipeline's own stage timings give P50/P90/P99 per stage, each
stage's share of the time and the bottleneck with its hint. The chart is written beside the report.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from benchmarks.report import BenchRow, machine_description
from ragjet.cli.demo import ensure_demo_collection
from ragjet.cli.profile import builtin_questions, profile_in_process
from ragjet.config import load_settings
from ragjet.obs.profile import ProfileReport, analyze
from ragjet.obs.report import write_chart
from ragjet.rag.types import AskOptions

TITLE = "Profile of the demo workload (`ragjet profile`, in process)"
SUITE = "profile"
CHART = Path("docs/profile.png")
MAX_TOKENS = 64


def run(quick: bool) -> tuple[list[BenchRow], str]:
    num_requests, concurrency = (4, 2) if quick else (32, 4)
    with tempfile.TemporaryDirectory(prefix="ragjet-bench-profile-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        asyncio.run(ensure_demo_collection(settings))
        options = AskOptions(collection=settings.serve.default_collection, max_tokens=MAX_TOKENS, use_cache=False)
        workload = asyncio.run(profile_in_process(settings, builtin_questions(), options, num_requests, concurrency))
    if not workload.timings:
        raise RuntimeError(f"every profiled request failed; first error: {workload.errors[0]}")
    report = analyze(workload.timings, workload.wall_s, concurrency)
    if not quick:
        write_chart(report, CHART, title="ragjet profile: demo workload (in process)")
    rows = [BenchRow(SUITE, s.stage, "p50 latency", s.p50_ms, "ms", higher_is_better=False) for s in report.stages]
    rows += [
        BenchRow(SUITE, "total", "p50 latency", report.total.p50_ms, "ms", higher_is_better=False),
        BenchRow(SUITE, "total", "p99 latency", report.total.p99_ms, "ms", higher_is_better=False),
        BenchRow(SUITE, "workload", "throughput", report.requests_per_s, "req/s"),
    ]
    notes = (
        f"Machine: {machine_description()}. {num_requests} questions from the shipped Python set over the demo "
        f"collection, {concurrency} in flight, {MAX_TOKENS} answer tokens, default settings (flat index + BM25, "
        f"SmolLM2-135M-Instruct on the native engine), {len(workload.errors)} errors.\n\n"
        f"{stage_table(report)}\n\n**Bottleneck: {report.bottleneck}** — {report.hint}\n\n"
        f"![profile chart]({CHART.name})"
    )
    return rows, notes


def stage_table(report: ProfileReport) -> str:
    lines = ["| stage | P50 ms | P90 ms | P99 ms | share |", "| --- | --- | --- | --- | --- |"]
    for s in (*report.stages, report.total):
        share = f"{100 * s.share:.1f}%" if s is not report.total else "100%"
        lines.append(f"| {s.stage} | {s.p50_ms:.1f} | {s.p90_ms:.1f} | {s.p99_ms:.1f} | {share} |")
    return "\n".join(lines)
