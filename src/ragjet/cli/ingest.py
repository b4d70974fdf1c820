"""`ragjet ingest PATH... --collection NAME`: load, chunk, embed and store files, with a progress bar."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragjet.cli import app
from ragjet.cli.errors import exit_on_user_error
from ragjet.config import Settings, load_settings
from ragjet.rag.ingestion import IngestReport

console, err_console = Console(), Console(stderr=True)


async def run_ingest(settings: Settings, collection: str, paths: list[Path]) -> IngestReport:
    from ragjet.rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    await pipeline.start(generate=False)
    try:
        return await pipeline.ingest(collection, paths, progress=True)
    finally:
        await pipeline.close()


def summary(report: IngestReport, collection: str) -> Table:
    table = Table(title=f"ingested into {collection!r} in {report.seconds:.1f} s", show_header=False)
    for label, value in [("added", report.num_added), ("updated", report.num_updated),
                         ("unchanged", report.num_unchanged), ("skipped", report.num_skipped),
                         ("chunks written", report.num_chunks)]:  # fmt: skip
        table.add_row(label, str(value))
    return table


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="files and folders (.txt, .md, .html, .pdf)"),
    collection: str = typer.Option(None, "--collection", "-c", help="collection to add to (created if missing)"),
) -> None:
    """Add or update documents; unchanged files are skipped, bad files are listed with the reason."""
    with exit_on_user_error():
        settings = load_settings()
        report = asyncio.run(run_ingest(settings, collection or settings.serve.default_collection, paths))
    console.print(summary(report, collection or settings.serve.default_collection))
    for error in report.errors:
        err_console.print(f"[yellow]skipped[/] {escape(error)}", highlight=False)
    if report.num_skipped and not (report.num_added or report.num_updated or report.num_unchanged):
        raise typer.Exit(1)  # nothing usable was given
