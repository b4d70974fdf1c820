"""Answers become metrics: stage histograms from generated answers only, a counter for answer-cache hits."""

from __future__ import annotations

from ragjet.obs.metrics import Metrics
from ragjet.rag.types import Answer, StageTimings


def test_cached_answers_count_as_hits_and_stay_out_of_the_stage_histograms() -> None:
    metrics = Metrics()
    generated = Answer("a", "Etna [1]", [], StageTimings(prefill_ms=120, decode_ms=300, total_ms=450),
                       completion_tokens=8)  # fmt: skip
    cached = Answer("b", "Etna [1]", [], StageTimings(embed_ms=5, total_ms=6), from_cache=True)
    metrics.observe_answer(generated)
    metrics.observe_answer(cached)
    sample = metrics.registry.get_sample_value
    assert sample("ragjet_answer_cache_hits_total") == 1
    assert sample("ragjet_stage_seconds_count", {"stage": "prefill"}) == 1  # the cached answer's 0 ms is not there
    assert sample("ragjet_stage_seconds_count", {"stage": "total"}) == 2
    assert sample("ragjet_answers_total", {"finish_reason": "stop"}) == 2
