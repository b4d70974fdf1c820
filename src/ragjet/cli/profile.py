"""`ragjet profile`: run a question workload, report per-stage P50/P90/P99, shares and the bottleneck."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragjet.cli import app
from ragjet.cli.errors import exit_on_user_error
from ragjet.config import Settings, load_settings
from ragjet.eval.datasets import load_dataset
from ragjet.eval.overrides import apply_overrides, parse_override
from ragjet.obs.profile import ProfileReport, analyze
from ragjet.obs.report import write_chart, write_json
from ragjet.obs.workload import WorkloadRun, http_request, read_questions, run_workload
from ragjet.rag.types import AskOptions

err_console = Console(stderr=True)


def builtin_questions() -> list[str]:
    """The questions of the shipped Python BEIR set: they fit the demo collection (Python's docs)."""
    return [q.text for q in load_dataset("python-beir").queries]


async def profile_in_process(
    settings: Settings, questions: list[str], options: AskOptions, num_requests: int, concurrency: int
) -> WorkloadRun:
    from ragjet.cli.ask import require_collection
    from ragjet.rag.pipeline import RagPipeline

    async def request(question: str) -> dict[str, float]:
        answer = await pipeline.ask(question, options)
        return answer.timings.as_dict()

    pipeline = RagPipeline(settings)
    await require_collection(pipeline, options.collection)
    await pipeline.start()
    try:
        await pipeline.ask(questions[0], options)  # warm-up: first-call allocations stay out of the figures
        return await run_workload(request, questions, num_requests, concurrency)
    finally:
        await pipeline.close()


async def profile_over_http(
    url: str, questions: list[str], collection: str | None, max_tokens: int, num_requests: int, concurrency: int
) -> WorkloadRun:
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        return await run_workload(http_request(client, collection, max_tokens), questions, num_requests, concurrency)


def report_table(report: ProfileReport) -> Table:
    table = Table(title=f"{report.num_requests} requests at concurrency {report.concurrency}")
    for column in ("stage", "P50 ms", "P90 ms", "P99 ms", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in (*report.stages, report.total):
        style = "bold red" if s.stage == report.bottleneck else None
        share = f"{100 * s.share:.1f}%" if s.stage != "total" else f"{report.requests_per_s:.2f} req/s"
        table.add_row(s.stage, f"{s.p50_ms:.1f}", f"{s.p90_ms:.1f}", f"{s.p99_ms:.1f}", share, style=style)
    return table


@app.command()
def profile(
    questions_file: Path = typer.Option(None, "--questions", "-q", help="questions, one per line (default: built-in)"),
    num_requests: int = typer.Option(32, "--requests", "-n", min=1, help="requests to send"),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="requests in flight at once"),
    collection: str = typer.Option(None, "--collection", help="collection to answer from (default: settings)"),
    url: str = typer.Option(None, "--url", help="profile a running server, e.g. http://127.0.0.1:8000"),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="answer length per request"),
    out: Path = typer.Option(Path("profile"), "--out", help="folder for profile.json and profile.png"),
    overrides: list[str] = typer.Option([], "--set", help="setting override section.field=value (repeatable)"),
) -> None:
    """Profile a question workload: per-stage latency percentiles, time shares, bottleneck and a hint."""
    with exit_on_user_error():
        settings = apply_overrides(load_settings(), tuple(parse_override(o) for o in overrides))
        questions = read_questions(questions_file) if questions_file else builtin_questions()
        if url:
            run = asyncio.run(profile_over_http(url, questions, collection, max_tokens, num_requests, concurrency))
        else:
            # The stages are what a profile measures: a repeated question must not come from the answer cache.
            collection = collection or settings.serve.default_collection
            options = AskOptions(collection=collection, max_tokens=max_tokens, use_cache=False)
            run = asyncio.run(profile_in_process(settings, questions, options, num_requests, concurrency))
        if not run.timings:
            raise ValueError(f"all {len(run.errors)} requests failed; first error: {run.errors[0]}")
        report = analyze(run.timings, run.wall_s, concurrency)
    target = url or "in-process"
    context = {"target": target, "num_errors": len(run.errors), "settings": settings.model_dump(mode="json")}
    write_json(report, out / "profile.json", context)
    write_chart(report, out / "profile.png", title=f"ragjet profile ({target})")
    console = Console()
    console.print(report_table(report))
    if run.errors:
        err_console.print(f"[yellow]{len(run.errors)} requests failed; first: {escape(run.errors[0])}[/]")
    console.print(f"[bold]bottleneck: {report.bottleneck}[/] — {escape(report.hint)}", highlight=False)
    console.print(f"wrote {out / 'profile.json'} and {out / 'profile.png'}", style="dim", highlight=False)
