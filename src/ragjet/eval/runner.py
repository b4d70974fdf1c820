"""Run one evaluation: ingest the corpus into a scratch collection, ask every query, score the results.

Retrieval runs through a `RagPipeline` started without its generator (embedder + index, no LLM) unless
answers are generated, in which case the full pipeline answers each question and its `StageTimings` give the latencies.
With `gold_baseline` each question is answered a second time from its judged-relevant document alone (retrieval
filtered to that file), so the answer metrics with retrieved context can be read against the same model's score when
retrieval is perfect.
Queries run one at a time so latencies are not inflated by queueing. The scratch collection has a
unique name and is deleted afterwards, whatever happens.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragjet.config import Settings
from ragjet.eval.datasets import EvalDataset, EvalQuery, write_corpus_files
from ragjet.eval.metrics import (
    answer_contained,
    auroc,
    exact_match,
    is_correct,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    token_f1,
    unique_in_order,
)
from ragjet.obs.profile import STAGES, stage_percentiles
from ragjet.rag.confidence import ConfidenceSignals
from ragjet.rag.types import AskOptions, StageTimings

if TYPE_CHECKING:
    from ragjet.rag.pipeline import RagPipeline
    from ragjet.retrieve import SearchHit

RECALL_KS = (1, 5, 10)
DEPTH = 10  # documents ranked per query: recall@10, MRR@10, nDCG@10
CHUNK_HITS = 30  # chunk hits fetched so that about DEPTH distinct documents remain after merging chunks
_CITATION_MARK = re.compile(r"\[\d+\]")


@dataclass(slots=True)
class QueryOutcome:
    query_id: str
    ranked_ids: list[str]  # distinct corpus ids, best first
    timings: dict[str, float]  # StageTimings.as_dict() of this query
    answer: str | None = None  # generated text, citation marks removed
    confidence: float | None = None  # the pipeline's confidence in that answer
    signals: ConfidenceSignals | None = None  # what the confidence was computed from
    gold_answer: str | None = None  # the answer from the judged-relevant document alone (gold_baseline)


@dataclass(slots=True)
class EvalResult:
    label: str  # the configuration, e.g. "index.kind=ivf_pq" or "default"
    dataset: str
    kind: str
    num_queries: int
    metrics: dict[str, float]  # "recall@1" … "ndcg@10"; with answers "exact_match", "f1", "contains", and
    # "confidence_auroc" (how well confidence separates right from wrong answers; only when both occur); with a
    # gold baseline "gold_f1", "gold_contains" and "f1_ratio", "contains_ratio" (retrieved / gold)
    latency_ms: dict[str, dict[str, float]]  # stage → {"p50", "p90", "p99"}; stages that took any time
    outcomes: list[QueryOutcome]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def score(dataset: EvalDataset, outcomes: list[QueryOutcome]) -> dict[str, float]:
    """Mean retrieval (and, where answers exist, answer) metrics over the outcomes' queries."""
    queries = {q.id: q for q in dataset.queries}
    rows: list[dict[str, float]] = []
    for outcome in outcomes:
        query = queries[outcome.query_id]
        row = {f"recall@{k}": recall_at_k(outcome.ranked_ids, query.qrels, k) for k in RECALL_KS}
        row[f"mrr@{DEPTH}"] = mrr_at_k(outcome.ranked_ids, query.qrels, DEPTH)
        row[f"ndcg@{DEPTH}"] = ndcg_at_k(outcome.ranked_ids, query.qrels, DEPTH)
        if outcome.answer is not None and query.answers:
            row["exact_match"] = exact_match(outcome.answer, query.answers)
            row["f1"] = token_f1(outcome.answer, query.answers)
            row["contains"] = answer_contained(outcome.answer, query.answers)
        rows.append(row)
    names = dict.fromkeys(name for row in rows for name in row)
    means = {name: sum(row[name] for row in rows if name in row) / sum(name in row for row in rows) for name in names}
    judged = [(o.confidence, is_correct(o.answer, queries[o.query_id].answers)) for o in outcomes
              if o.answer is not None and o.confidence is not None and queries[o.query_id].answers]  # fmt: skip
    separation = auroc([c for c, _ in judged], [right for _, right in judged])
    if separation is not None:
        means["confidence_auroc"] = separation
    return means | _gold_metrics(queries, outcomes, means)


def _gold_metrics(queries: dict[str, EvalQuery], outcomes: list[QueryOutcome], means: dict[str, float]
                  ) -> dict[str, float]:  # fmt: skip
    """Answer metrics from the gold documents alone, and the retrieved-context figures as a share of them."""
    gold = [(o.gold_answer, queries[o.query_id].answers) for o in outcomes
            if o.gold_answer is not None and queries[o.query_id].answers]  # fmt: skip
    if not gold:
        return {}
    metrics = {
        "gold_f1": sum(token_f1(answer, golds) for answer, golds in gold) / len(gold),
        "gold_contains": sum(answer_contained(answer, golds) for answer, golds in gold) / len(gold),
    }
    for name in ("f1", "contains"):
        if metrics[f"gold_{name}"] > 0 and name in means:
            metrics[f"{name}_ratio"] = means[name] / metrics[f"gold_{name}"]
    return metrics


def latency_summary(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Percentiles of each stage that took time in any query, then of the total."""
    stages = [s for s in STAGES if any(t.get(f"{s}_ms", 0.0) > 0 for t in timings)]
    return {stage: stage_percentiles(timings, stage) for stage in [*stages, "total"]} if timings else {}


async def evaluate(
    settings: Settings,
    dataset: EvalDataset,
    *,
    generate: bool,
    label: str = "default",
    max_tokens: int = 64,
    gold_baseline: bool = False,
) -> EvalResult:
    """Evaluate `dataset` under `settings`; `generate` also answers each question with the LLM, and
    `gold_baseline` (with `generate`) answers it again from its judged-relevant document alone."""
    collection = f"eval-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="ragjet-eval-") as scratch:
        stems = write_corpus_files(dataset, Path(scratch))
        paths = sorted(Path(scratch).iterdir())
        if generate:
            outcomes = await _run_generation(settings, dataset, collection, paths, stems, max_tokens, gold_baseline)
        else:
            outcomes = await _run_retrieval(settings, dataset, collection, paths, stems)
    return EvalResult(
        label=label,
        dataset=dataset.name,
        kind=dataset.kind,
        num_queries=len(outcomes),
        metrics=score(dataset, outcomes),
        latency_ms=latency_summary([o.timings for o in outcomes]),
        outcomes=outcomes,
    )


async def _run_retrieval(
    settings: Settings, dataset: EvalDataset, collection: str, paths: list[Path], stems: dict[str, str]
) -> list[QueryOutcome]:
    from ragjet.rag.pipeline import RagPipeline

    system = RagPipeline(settings)
    await system.start(generate=False)
    try:
        await system.ingest(collection, paths)
        outcomes = []
        for query in dataset.queries:
            timings = StageTimings()
            hits = await system.search(query.text, collection, CHUNK_HITS, timings=timings)
            outcomes.append(QueryOutcome(query.id, _ranked_ids(hits, stems), timings.as_dict()))
        return outcomes
    finally:
        await _delete_quietly(system, collection)
        await system.close()


async def _run_generation(
    settings: Settings,
    dataset: EvalDataset,
    collection: str,
    paths: list[Path],
    stems: dict[str, str],
    max_tokens: int,
    gold_baseline: bool,
) -> list[QueryOutcome]:
    from ragjet.rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    await pipeline.start()
    try:
        await pipeline.ingest(collection, paths)
        # Every question is generated: a dataset that repeats one must not score the answer cache.
        options = AskOptions(collection=collection, max_tokens=max_tokens, temperature=0.0, use_cache=False)
        paths_of = {doc_id: str(path) for path in paths if (doc_id := stems.get(path.stem)) is not None}
        outcomes = []
        for query in dataset.queries:
            hits = await pipeline.search(query.text, collection, CHUNK_HITS)
            answer = await pipeline.ask(query.text, options)
            outcome = QueryOutcome(query.id, _ranked_ids(hits, stems), answer.timings.as_dict(), _plain(answer.text),
                                   answer.confidence, answer.confidence_signals)  # fmt: skip
            if gold_baseline:
                gold = {"source_prefix": paths_of[next(iter(query.qrels))]}  # one file: its stem has a fixed width
                outcome.gold_answer = _plain((await pipeline.ask(query.text, replace(options, filters=gold))).text)
            outcomes.append(outcome)
        return outcomes
    finally:
        await _delete_quietly(pipeline, collection)
        await pipeline.close()


def _plain(text: str) -> str:
    """An answer as scored: citation marks removed, whitespace collapsed."""
    return " ".join(_CITATION_MARK.sub(" ", text).split())


def _ranked_ids(hits: list[SearchHit], stems: dict[str, str]) -> list[str]:
    """Chunk hits → distinct corpus ids, best first (a hit's source is the path of its corpus file)."""
    ids = [stems[Path(hit.source).stem] for hit in hits if Path(hit.source).stem in stems]
    return unique_in_order(ids)[:DEPTH]


async def _delete_quietly(system: RagPipeline, collection: str) -> None:
    """Remove the scratch collection; an ingest that failed early may not have created it."""
    from ragjet.store import CollectionNotFoundError

    with contextlib.suppress(CollectionNotFoundError):
        await system.delete_collection(collection)
