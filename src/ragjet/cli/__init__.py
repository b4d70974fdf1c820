"""The `ragjet` command line: one typer app, each command group in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ragjet: fast retrieval-augmented generation")


@app.callback()
def _root() -> None:
    """ragjet: fast retrieval-augmented generation."""


def main() -> None:
    app()


# Command modules register themselves on `app` when imported.
from ragjet.cli import (
    ask,  # noqa: E402,F401
    collections,  # noqa: E402,F401
    demo,  # noqa: E402,F401
    doctor,  # noqa: E402,F401
    eval,  # noqa: E402,F401
    generate,  # noqa: E402,F401
    ingest,  # noqa: E402,F401
    keys,  # noqa: E402,F401
    profile,  # noqa: E402,F401
    review,  # noqa: E402,F401
    search,  # noqa: E402,F401
    serve,  # noqa: E402,F401
)
