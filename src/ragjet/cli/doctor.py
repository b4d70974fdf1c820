"""`ragjet doctor`: the host and the compute paths ragjet chose, the report to paste into a bug report."""

from __future__ import annotations

import json

import typer

from ragjet.cli import app
from ragjet.cli.errors import err_console, exit_on_user_error
from ragjet.config import load_settings


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    no_build: bool = typer.Option(
        False, "--no-build", help="do not compile the fused CPU kernels; only report whether a build is cached"
    ),
) -> None:
    """Report the CPU, its ISA level and GPUs, the compute choices made for them and why, and the models found.

    The fused CPU kernels are built first (once, ~15-30 s) unless --no-build: a failing build shows here, not later.
    """
    from ragjet.system_report import render_text, system_report

    with exit_on_user_error():
        report = system_report(load_settings(), build_kernels=not no_build, on_build=err_console.print)
    print(json.dumps(report, indent=2) if as_json else render_text(report))
