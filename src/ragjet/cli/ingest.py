"""`ragjet ingest PATH... --collection NAME [--ray]`: load, chunk, embed and store files, with a progress bar;
with --ray, loading, chunking and embedding run on a Ray cluster (rag/ray_ingest.py)."""

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


def run_ray_ingest(
    settings: Settings, collection: str, paths: list[Path], address: str | None, num_actors: int, num_gpus: float
) -> IngestReport:
    from ragjet.rag.ray_ingest import RayIngestOptions, ray_ingest, require_ray_data

    try:
        require_ray_data()
    except ImportError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)  # [ray] is an extra, not markup
        raise typer.Exit(2) from None
    from ray.exceptions import RayError

    try:
        options = RayIngestOptions(address, num_embed_actors=num_actors, num_gpus_per_actor=num_gpus)
        return ray_ingest(settings, collection, paths, options, progress=True)
    except RayError as exc:
        cause = str(exc).strip().splitlines()[-1]
        err_console.print(f"[red]error:[/] the Ray ingest stopped: {escape(cause)}; the documents stored before it "
                          "stay stored: run the same command again to finish", highlight=False)  # fmt: skip
        raise typer.Exit(1) from None


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="files and folders (.txt, .md, .html, .pdf)"),
    collection: str = typer.Option(None, "--collection", "-c", help="collection to add to (created if missing)"),
    on_ray: bool = typer.Option(
        False, "--ray", help="load, chunk and embed on a Ray cluster with Ray Data (ragjet[ray]); stored here"
    ),
    ray_address: str = typer.Option(
        None, envvar="RAY_ADDRESS", help="with --ray: the cluster to join (default: a local Ray instance)"
    ),
    ray_actors: int = typer.Option(1, min=1, help="with --ray: embedder actors, one model copy each"),
    ray_gpus_per_actor: float = typer.Option(0.0, min=0.0, help="with --ray: GPUs each embedder actor takes"),
) -> None:
    """Add or update documents; unchanged files are skipped, bad files are listed with the reason."""
    with exit_on_user_error():
        settings = load_settings()
        name = collection or settings.serve.default_collection
        if on_ray:
            report = run_ray_ingest(settings, name, paths, ray_address, ray_actors, ray_gpus_per_actor)
        else:
            report = asyncio.run(run_ingest(settings, name, paths))
    console.print(summary(report, name))
    for error in report.errors:
        err_console.print(f"[yellow]skipped[/] {escape(error)}", highlight=False)
    if report.num_skipped and not (report.num_added or report.num_updated or report.num_unchanged):
        raise typer.Exit(1)  # nothing usable was given
