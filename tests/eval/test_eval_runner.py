"""Scoring a run: per-query metrics averaged, answer metrics only where answers exist, latency summaries."""

from __future__ import annotations

import pytest

from ragjet.eval.datasets import CorpusDoc, EvalDataset, EvalQuery
from ragjet.eval.runner import QueryOutcome, latency_summary, score

DATASET = EvalDataset(
    "tiny",
    "squad",
    tuple(CorpusDoc(d, "", d) for d in ("a", "b", "c")),
    (
        EvalQuery("q1", "?", {"a": 1}, ("Guido van Rossum",)),
        EvalQuery("q2", "?", {"c": 2, "b": 1}, ("1991",)),
    ),
)


def test_score_averages_hand_computed_per_query_values():
    outcomes = [
        QueryOutcome("q1", ["a", "b"], {}, "Guido van Rossum"),  # rank 1, exact
        QueryOutcome("q2", ["a", "b", "c"], {}, "in 1991"),  # relevant at 2 and 3
    ]
    metrics = score(DATASET, outcomes)
    assert metrics["recall@1"] == pytest.approx((1 + 0) / 2)
    assert metrics["recall@5"] == pytest.approx(1.0)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    ndcg_q2 = (1 / 1.5849625007 + 2 / 2) / (2 + 1 / 1.5849625007)
    assert metrics["ndcg@10"] == pytest.approx((1 + ndcg_q2) / 2)
    assert metrics["exact_match"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx((1 + 2 / 3) / 2)  # "in 1991" vs "1991": p=1/2, r=1
    assert metrics["contains"] == pytest.approx(1.0)


def test_confidence_auroc_ranks_right_answers_against_wrong_ones():
    right, wrong = QueryOutcome("q1", [], {}, "Guido van Rossum", 0.6), QueryOutcome("q2", [], {}, "1989", 0.4)
    assert score(DATASET, [right, wrong])["confidence_auroc"] == pytest.approx(1.0)
    assert "confidence_auroc" not in score(DATASET, [right])  # one class only: undefined


def test_retrieval_only_runs_have_no_answer_metrics():
    metrics = score(DATASET, [QueryOutcome("q1", [], {})])
    assert set(metrics) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    assert all(value == 0.0 for value in metrics.values())


def test_latency_summary_keeps_stages_that_took_time():
    timings = [{"embed_ms": float(i), "search_ms": 2.0, "decode_ms": 0.0, "total_ms": i + 2.0} for i in range(1, 11)]
    summary = latency_summary(timings)
    assert list(summary) == ["embed", "search", "total"]
    assert summary["embed"]["p50"] == pytest.approx(5.5) and summary["search"]["p99"] == 2.0
    assert latency_summary([]) == {}


def test_gold_baseline_metrics_and_the_ratio_of_retrieved_to_gold():
    outcomes = [
        QueryOutcome("q1", ["a"], {}, "Guido van Rossum", gold_answer="Guido van Rossum"),
        QueryOutcome("q2", ["a"], {}, "1989", gold_answer="in 1991"),
    ]
    metrics = score(DATASET, outcomes)
    assert metrics["gold_contains"] == pytest.approx(1.0) and metrics["contains"] == pytest.approx(0.5)
    assert metrics["gold_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics["contains_ratio"] == pytest.approx(0.5)
    assert metrics["f1_ratio"] == pytest.approx(0.5 / ((1 + 2 / 3) / 2))
    assert "gold_f1" not in score(DATASET, [QueryOutcome("q1", ["a"], {}, "Guido")])  # no baseline asked for
