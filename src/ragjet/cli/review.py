"""`ragjet review`: the human review queue from the terminal (the same SQLite file the server writes)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ragjet.cli import app
from ragjet.config import ConfigError, load_settings
from ragjet.rag.review import ReviewItemNotFoundError, ReviewQueue
from ragjet.rag.tenants import DEFAULT_TENANT

review_app = typer.Typer(no_args_is_help=True, help="Answers flagged for human review: list, show, resolve.")
app.add_typer(review_app, name="review")
console = Console()
TENANT_OPTION = typer.Option(DEFAULT_TENANT, help="whose review queue (the tenant of the answers)")
errors = Console(stderr=True)


def _queue() -> ReviewQueue:
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    return ReviewQueue(settings.data_dir.expanduser() / "review.db")


@review_app.command("list")
def list_items(
    status: str = typer.Option("pending", help="pending, resolved or all"),
    limit: int = typer.Option(50, min=1),
    tenant: str = TENANT_OPTION,
) -> None:
    """Flagged answers, newest first."""
    if status not in {"pending", "resolved", "all"}:
        raise typer.BadParameter("status must be pending, resolved or all")
    items = _queue().list(tenant, None if status == "all" else status, limit)  # type: ignore[arg-type]
    table = Table(title=f"review queue ({status})")
    for column in ("id", "collection", "confidence", "question", "status"):
        table.add_column(column)
    for i in items:
        confidence = "" if i.confidence is None else f"{i.confidence:.2f}"
        table.add_row(i.id, i.collection, confidence, i.question[:60], i.status)
    console.print(table)


@review_app.command()
def show(item_id: str, tenant: str = TENANT_OPTION) -> None:
    """One item: the question, the answer, its sources and scores."""
    try:
        item = _queue().get(tenant, item_id)
    except ReviewItemNotFoundError as exc:
        errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"[bold]{item.question}[/]  ({item.collection}, {item.status})\n\n{item.answer}\n")
    for c in item.citations:
        console.print(f"[dim][{c['number']}] {c['source']} (score {float(str(c['score'])):.3f})[/]")
    if item.resolution is not None:
        console.print(f"\n[green]resolved by {item.reviewer or 'unknown'}:[/] {item.resolution}")


@review_app.command()
def resolve(
    item_id: str,
    answer: str = typer.Option("", help="the corrected answer; leave empty to approve the original"),
    reviewer: str = typer.Option(None, help="who reviewed it"),
    tenant: str = TENANT_OPTION,
) -> None:
    """Resolve an item; the same question to the same collection then gets this answer."""
    try:
        item = _queue().resolve(tenant, item_id, answer, reviewer)
    except ReviewItemNotFoundError as exc:
        errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"resolved {item.id}: {item.resolution}")
