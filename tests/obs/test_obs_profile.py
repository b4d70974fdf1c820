"""Profile analysis: percentiles against numpy, shares, and the bottleneck a slowed-down stage produces."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ragjet.obs.profile import HINTS, STAGES, analyze, percentile, stage_percentiles


def timing(slow: str | None = None, base: float = 5.0, factor: float = 10.0, jitter: float = 0.0) -> dict[str, float]:
    """One request's timings: every stage `base` ms (± jitter), `slow` `factor`× longer; total = sum + 1 ms."""
    rng = random.Random(hash((slow, jitter)))
    t = {f"{s}_ms": base * (factor if s == slow else 1.0) + rng.uniform(0, jitter) for s in STAGES}
    t["total_ms"] = sum(t.values()) + 1.0
    return t


def test_percentile_matches_numpy_linear_interpolation():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        values = rng.exponential(10.0, n).tolist()
        for q in (0, 50, 90, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_percentile_rejects_empty_input_and_bad_q():
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


@pytest.mark.parametrize("slow", STAGES)
def test_the_artificially_slow_stage_is_named_with_its_hint(slow: str):
    report = analyze([timing(slow, jitter=1.0) for _ in range(20)], wall_s=2.0, concurrency=4)
    assert report.bottleneck == slow and report.hint == HINTS[slow]
    shares = {s.stage: s.share for s in report.stages}
    assert shares[slow] == max(shares.values()) and shares[slow] > 0.5


def test_search_ten_times_slower_gets_the_ann_hint():
    report = analyze([timing("search") for _ in range(10)], wall_s=1.0)
    assert report.bottleneck == "search" and "ANN index" in report.hint
    search = next(s for s in report.stages if s.stage == "search")
    assert search.p50_ms == search.p99_ms == 50.0
    assert search.share == pytest.approx(50.0 / 81.0)  # total: 6 stages × 5 ms + 50 ms + 1 ms other


def test_shares_with_other_sum_to_one_and_figures_are_consistent():
    timings = [timing("decode", jitter=3.0) for _ in range(50)]
    report = analyze(timings, wall_s=5.0, concurrency=8)
    assert sum(s.share for s in report.stages) == pytest.approx(1.0)
    assert [s.stage for s in report.stages] == [*STAGES, "other"]
    assert report.num_requests == 50 and report.requests_per_s == pytest.approx(10.0) and report.concurrency == 8
    decode = next(s for s in report.stages if s.stage == "decode")
    assert decode.p50_ms <= decode.p90_ms <= decode.p99_ms
    assert report.total.p50_ms == pytest.approx(stage_percentiles(timings, "total")["p50"])
    assert report.to_json()["bottleneck"] == "decode"


def test_unmeasured_time_is_reported_as_other():
    timings = [{"embed_ms": 1.0, "decode_ms": 2.0, "total_ms": 40.0} for _ in range(5)]
    report = analyze(timings, wall_s=1.0)
    assert report.bottleneck == "other" and report.hint == HINTS["other"]


def test_an_empty_workload_is_an_error():
    with pytest.raises(ValueError, match="no requests"):
        analyze([], wall_s=1.0)
