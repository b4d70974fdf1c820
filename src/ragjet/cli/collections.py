"""`ragjet collections`: list collections, show one's documents, delete or repair one.

Each command goes through the collection registry the server uses (rag/collections.py): the same writer rules
(a delete refused while this process ingests, a repair waiting for a writer) and the same index device.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragjet.cli import app
from ragjet.cli.errors import exit_on_user_error
from ragjet.config import load_settings

if TYPE_CHECKING:
    from ragjet.rag.collections import CollectionRegistry

console, err_console = Console(), Console(stderr=True)
collections_app = typer.Typer(help="list, inspect, delete or repair collections", invoke_without_command=True)
app.add_typer(collections_app, name="collections")


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


@collections_app.callback()
def collections(ctx: typer.Context) -> None:
    """Without a subcommand: list every collection with its size."""
    if ctx.invoked_subcommand is not None:
        return
    with exit_on_user_error():
        infos = _registry().infos()
    if not infos:
        err_console.print("no collections yet; create one with `ragjet ingest PATH --collection NAME`")
        return
    table = Table("name", "documents", "chunks", "index", "embedder", "updated")
    for c in infos:
        table.add_row(c.name, str(c.num_documents), str(c.num_chunks), c.index_kind, c.embedder_id, _when(c.updated_at))
    console.print(table)


@collections_app.command()
def stats(name: str = typer.Argument(..., help="collection name")) -> None:
    """One collection's settings and documents."""
    with exit_on_user_error():
        registry = _registry()
        info, documents = registry.info(name), registry.documents(name)
    console.print(f"[bold]{name}[/]: {info.num_documents} documents, {info.num_chunks} chunks, "
                  f"{info.index_kind} index, embedder {info.embedder_id} ({info.dim}-d)")  # fmt: skip
    table = Table("source", "title", "chunks", "ingested")
    for d in documents:
        table.add_row(escape(d.source), escape(d.title), str(d.num_chunks), _when(d.ingested_at))
    console.print(table)


@collections_app.command()
def delete(
    name: str = typer.Argument(..., help="collection name"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
) -> None:
    """Delete a collection and everything stored in it."""
    if not yes and not typer.confirm(f"delete collection {name!r} and all its documents?"):
        raise typer.Exit(1)
    with exit_on_user_error():
        _registry().delete(name)
    console.print(f"deleted collection {name!r}")


@collections_app.command()
def repair(name: str = typer.Argument(..., help="collection name")) -> None:
    """Rebuild the manifest and indexes of a collection from its chunk store (after damage or a crash)."""
    with exit_on_user_error():
        info = _registry().repair(name)
    console.print(f"repaired {name!r}: {info.num_documents} documents, {info.num_chunks} chunks")


def _registry() -> CollectionRegistry:
    from ragjet.rag.collections import CollectionRegistry

    return CollectionRegistry(load_settings())
