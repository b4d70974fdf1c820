"""`ragjet search "question"`: the ranked chunks retrieval returns, without generating an answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragjet.cli import app
from ragjet.cli.ask import require_collection
from ragjet.cli.errors import exit_on_user_error
from ragjet.config import Settings, load_settings
from ragjet.retrieve import SearchHit

console, err_console = Console(), Console(stderr=True)


async def run_search(settings: Settings, query: str, collection: str, top_k: int | None) -> list[SearchHit]:
    from ragjet.rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    await require_collection(pipeline, collection)
    await pipeline.start(generate=False)
    try:
        return await pipeline.search(query, collection, top_k)
    finally:
        await pipeline.close()


def hits_table(hits: list[SearchHit]) -> Table:
    table = Table("#", "score", "source", "heading", "text")
    for hit in hits:
        where = hit.source + (f":{hit.page}" if hit.page is not None else "")
        snippet = " ".join(hit.text.split())[:160]
        table.add_row(str(hit.rank), f"{hit.score:.4f}", escape(where), escape(hit.heading), escape(snippet))
    return table


@app.command()
def search(
    query: str = typer.Argument(..., help="what to look for"),
    collection: str = typer.Option(None, "--collection", "-c", help="collection to search (default: settings)"),
    top_k: int = typer.Option(None, "--top-k", "-k", min=1, help="results to show"),
    as_json: bool = typer.Option(False, "--json", help="print the hits as JSON"),
) -> None:
    """Two-stage retrieval (vector index, exact rescoring, BM25 fusion) over one collection."""
    with exit_on_user_error():
        settings = load_settings()
        hits = asyncio.run(run_search(settings, query, collection or settings.serve.default_collection, top_k))
    if as_json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
    elif not hits:
        err_console.print("no matching chunks")
    else:
        console.print(hits_table(hits))
