"""`ragjet keys`: API keys and their tenants (stored hashed in the data dir's keys.db)."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from ragjet.cli import app
from ragjet.config import ConfigError, load_settings
from ragjet.serve.auth import KeyStore

keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")
app.add_typer(keys_app, name="keys")
console = Console()
errors = Console(stderr=True)


def _store() -> KeyStore:
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    return KeyStore(settings.data_dir.expanduser() / "keys.db")


@keys_app.command()
def create(tenant: str, name: str = typer.Option("", help="a label, e.g. who uses the key")) -> None:
    """A new key for TENANT; the key is printed once and only its hash is stored."""
    try:
        info, key = _store().create(tenant, name)
    except ValueError as exc:
        errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    errors.print(f"key {info.id} for tenant [bold]{info.tenant}[/] (store it now: it is not shown again)")
    print(key)


@keys_app.command("list")
def list_keys() -> None:
    """Every key's id, tenant, label and state (never the key itself)."""
    table = Table(title="API keys")
    for column in ("id", "tenant", "name", "created", "state"):
        table.add_column(column)
    for k in _store().list():
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
        table.add_row(k.id, k.tenant, k.name, created, "revoked" if k.revoked else "active")
    console.print(table)


@keys_app.command()
def revoke(key_id: str) -> None:
    """Revoke a key by its id; requests with it fail from now on."""
    if not _store().revoke(key_id):
        errors.print(f"[red]error:[/] no active key {key_id!r}")
        raise typer.Exit(2)
    console.print(f"revoked {key_id}")
