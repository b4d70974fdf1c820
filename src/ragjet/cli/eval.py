"""`ragjet eval DATASET`: retrieval (and answer) quality and latency, optionally two configurations side by side."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ragjet.cli import app
from ragjet.cli.errors import exit_on_user_error
from ragjet.config import Settings, load_settings
from ragjet.eval.calibration import calibrate
from ragjet.eval.datasets import EvalDataset, load_dataset
from ragjet.eval.overrides import Override, apply_overrides, label, parse_compare, parse_override
from ragjet.eval.runner import EvalResult, evaluate


def run_configs(
    settings: Settings,
    dataset: EvalDataset,
    configs: list[tuple[Override, ...]],
    generate: bool,
    max_tokens: int,
    gold_baseline: bool = False,
) -> list[EvalResult]:
    """One evaluation per configuration, in order; each gets its own scratch collection."""
    resolved = [(label(c), apply_overrides(settings, c)) for c in configs]  # every override checked before any work
    return [
        asyncio.run(evaluate(s, dataset, generate=generate, label=name, max_tokens=max_tokens,
                             gold_baseline=gold_baseline))
        for name, s in resolved
    ]  # fmt: skip


def write_calibration(settings: Settings, dataset: EvalDataset, result: EvalResult, path: Path) -> dict[str, object]:
    """Fit the confidence model on `result`'s answers, write it to `path` and return the held-out report."""
    model, report = calibrate(dataset, result.outcomes, settings.rag.review_threshold)
    report |= {"generator": settings.llm.model, "settings": result.label}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.to_json(report))
    return report


def calibration_table(report: dict[str, object]) -> Table:
    table = Table(title=f"confidence calibration, held-out topics of {report['dataset']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in report.items():
        if isinstance(value, float):
            table.add_row(name, f"{value:.3f}")
        elif isinstance(value, int | str):
            table.add_row(name, str(value))
    return table


def results_table(results: list[EvalResult]) -> Table:
    first = results[0]
    table = Table(title=f"{first.dataset} ({first.kind}, {first.num_queries} queries)")
    table.add_column("metric")
    for result in results:
        table.add_column(result.label, justify="right")
    if len(results) == 2:
        table.add_column("delta", justify="right")
    for name in first.metrics:
        values = [r.metrics.get(name, 0.0) for r in results]
        table.add_row(
            name, *(f"{v:.3f}" for v in values), *([f"{values[1] - values[0]:+.3f}"] if len(values) == 2 else [])
        )
    table.add_section()
    for stage in dict.fromkeys(s for r in results for s in r.latency_ms):
        cells = [_latency_cell(r, stage) for r in results]
        p50s = [r.latency_ms.get(stage, {}).get("p50", 0.0) for r in results]
        delta = [f"{p50s[1] - p50s[0]:+.1f}"] if len(results) == 2 else []
        table.add_row(f"{stage} ms p50/p90/p99", *cells, *delta)
    return table


def _latency_cell(result: EvalResult, stage: str) -> str:
    p = result.latency_ms.get(stage)
    return f"{p['p50']:.1f} / {p['p90']:.1f} / {p['p99']:.1f}" if p else "-"


def results_json(results: list[EvalResult]) -> dict[str, object]:
    body: dict[str, object] = {"results": [r.to_json() for r in results]}
    if len(results) == 2:
        left, right = results
        body["delta"] = {name: right.metrics.get(name, 0.0) - value for name, value in left.metrics.items()}
    return body


@app.command(name="eval")
def eval_command(
    dataset_path: str = typer.Argument(..., help="BEIR folder, SQuAD .json file, or python-beir / python-squad"),
    compare: str = typer.Option(None, "--compare", help="two configurations A,B, e.g. index.kind=flat,index.kind=hnsw"),
    overrides: list[str] = typer.Option([], "--set", help="setting override for every run, section.field=value"),
    limit: int = typer.Option(None, "--limit", min=1, help="evaluate only the first N queries"),
    generate: bool = typer.Option(None, "--generate/--no-generate", help="answer with the LLM (default: SQuAD only)"),
    split: str = typer.Option("test", "--split", help="BEIR qrels split (qrels/<split>.tsv)"),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="answer length when generating"),
    json_path: Path = typer.Option(None, "--json", help="also write the results (and per-query outcomes) here"),
    gold_baseline: bool = typer.Option(
        False, "--gold-baseline", help="also answer each question from its gold paragraph alone (SQuAD)"
    ),
    calibrate_path: Path = typer.Option(
        None, "--calibrate", help="fit the confidence model on these answers and write it here (SQuAD)"
    ),
) -> None:
    """Evaluate retrieval (recall@k, MRR@10, nDCG@10) and answers (EM, F1) on a BEIR or SQuAD dataset."""
    with exit_on_user_error():
        settings = apply_overrides(load_settings(), tuple(parse_override(o) for o in overrides))
        configs: list[tuple[Override, ...]] = list(parse_compare(compare)) if compare else [()]
        dataset = load_dataset(dataset_path, split).limited(limit)
        use_llm = generate if generate is not None else dataset.kind == "squad"
        if (gold_baseline or calibrate_path) and not (use_llm and dataset.kind == "squad"):
            raise ValueError("--gold-baseline and --calibrate need a SQuAD set and generated answers")
        if calibrate_path is not None and compare:
            raise ValueError("--calibrate fits one configuration: leave out --compare")
        results = run_configs(settings, dataset, configs, use_llm, max_tokens, gold_baseline)
        report = write_calibration(settings, dataset, results[0], calibrate_path) if calibrate_path else None
    Console().print(results_table(results))
    if report is not None:
        Console().print(calibration_table(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results_json(results) | {"calibration": report}, indent=2))
