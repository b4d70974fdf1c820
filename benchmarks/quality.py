"""Quality benchmark: `ragjet eval` on the small shipped sets, each compared against a second configuration.

Retrieval (python-beir): the default hybrid retrieval (dense + BM25 fused by RRF) against dense only.
Answers (python-squad): the CPU default, int8 weight-only linears, against unquantised bf16 weights, so
the accuracy cost of int8 is measured, never assumed. Both sets were written for ragjet's tests.
"""

from __future__ import annotations

import asyncio

from benchmarks.report import BenchRow, machine_description
from ragjet.config import load_settings
from ragjet.eval.datasets import EvalDataset, load_dataset
from ragjet.eval.overrides import Override, apply_overrides, label, parse_override
from ragjet.eval.runner import EvalResult, evaluate

TITLE = "Quality (`ragjet eval` on the shipped Python sets)"
SUITE = "quality"
RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
ANSWER_METRICS = ("exact_match", "f1", "contains", "confidence_auroc")  # AUROC only where right and wrong occur
MAX_TOKENS = 48


def run(quick: bool) -> tuple[list[BenchRow], str]:
    limit = 3 if quick else None
    beir, squad = load_dataset("python-beir").limited(limit), load_dataset("python-squad").limited(limit)
    retrieval = compare(beir, (), (parse_override("retrieve.use_bm25=false"),), generate=False)
    answers = compare(squad, (), (parse_override("llm.quantization=bf16"),), generate=True)
    rows = rows_of(retrieval, RETRIEVAL_METRICS) + rows_of(answers, ANSWER_METRICS)
    rows += [
        BenchRow(SUITE, f"{r.dataset} ({r.label})", "p50 total latency", r.latency_ms["total"]["p50"], "ms",
                 higher_is_better=False)
        for r in (*retrieval, *answers)
    ]  # fmt: skip
    notes = (
        f"Machine: {machine_description()}. python-beir: {beir_sizes(beir)}; retrieval only. python-squad: "
        f"{len(squad.queries)} questions answered with {MAX_TOKENS} greedy tokens (citation marks removed before "
        "scoring). The peer column is the second configuration of the same run; ratio > 1 means the first "
        "(ragjet's default) scored higher. Sets this small give coarse figures: one query moves recall@1 of "
        f"python-beir by {1 / len(beir.queries):.3f}."
    )
    return rows, notes


def compare(
    dataset: EvalDataset, first: tuple[Override, ...], second: tuple[Override, ...], generate: bool
) -> tuple[EvalResult, EvalResult]:
    settings = load_settings()
    a, b = (
        asyncio.run(evaluate(apply_overrides(settings, c), dataset, generate=generate, label=label(c),
                             max_tokens=MAX_TOKENS))
        for c in (first, second)
    )  # fmt: skip
    return a, b


def rows_of(results: tuple[EvalResult, EvalResult], metrics: tuple[str, ...]) -> list[BenchRow]:
    first, second = results
    return [
        BenchRow(SUITE, f"{first.dataset}: {first.label} vs {second.label}", name, first.metrics[name], "",
                 peer=second.label, peer_value=second.metrics[name])
        for name in metrics
        if name in first.metrics and name in second.metrics
    ]  # fmt: skip


def beir_sizes(dataset: EvalDataset) -> str:
    return f"{len(dataset.corpus)} documents, {len(dataset.queries)} queries"
