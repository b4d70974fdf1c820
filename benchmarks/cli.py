"""`python -m benchmarks SUITE`: run a benchmark suite against its peers and write docs/benchmarks.md.

The suites live beside the ragjet package, not in it: their peers (sentence-transformers, transformers,
hnswlib, llama-cpp-python) are test and bench dependencies that an installed ragjet never needs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console

from benchmarks.contention import contention_note, others_share, sample
from benchmarks.report import markdown_table, write_suite

# Each suite module exposes TITLE and run(quick) -> (rows, notes).
SUITES = (
    "embed",
    "embed_backends",
    "search",
    "shards",
    "ingest",
    "llm",
    "e2e",
    "profile",
    "quality",
    "kv_reuse",
    "ray_serve",
)

app = typer.Typer(add_completion=False)


@app.command()
def bench(
    suite: str = typer.Argument("all", help=f"one of {', '.join(SUITES)} or 'all'"),
    out: Path = typer.Option(Path("docs/benchmarks.md"), help="markdown report (a .json history sits beside it)"),
    quick: bool = typer.Option(False, help="small sizes: a smoke run, not figures to publish"),
) -> None:
    """Measure ragjet against its peers in one run and record the table."""
    names = SUITES if suite == "all" else (suite,)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise typer.BadParameter(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)} or 'all'")
    console = Console()
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        console.rule(f"bench {name}")
        started = sample()
        rows, notes = module.run(quick=quick)
        contention = contention_note(others_share(started, sample()))
        console.print(markdown_table(rows))
        console.print(contention)
        if not quick:
            write_suite(name, module.TITLE, rows, f"{notes}\n\n{contention}", out)
