"""Confidence: bounded, monotone in both signals, retrieval-only without logprobs."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ragjet.rag.confidence import (
    CLOSE_MATCH_COSINE,
    UNRELATED_COSINE,
    answer_confidence,
    generation_confidence,
    retrieval_confidence,
)

cosines = st.lists(st.floats(-1.0, 1.0), max_size=10)
logprobs = st.floats(-50.0, 0.0)


@given(cosines, st.one_of(st.none(), logprobs))
def test_confidence_stays_in_unit_interval(scores, mean_logprob):
    assert 0.0 <= answer_confidence(scores, mean_logprob) <= 1.0


@given(cosines, st.floats(0.0, 0.5))
def test_better_retrieval_never_lowers_confidence(scores, boost):
    assert retrieval_confidence([s + boost for s in scores]) >= retrieval_confidence(scores)


def test_anchor_points():
    assert retrieval_confidence([]) == 0.0
    assert retrieval_confidence([UNRELATED_COSINE] * 3) == 0.0
    assert retrieval_confidence([CLOSE_MATCH_COSINE, 0.9, 0.99]) == 1.0
    assert retrieval_confidence([0.99, UNRELATED_COSINE, UNRELATED_COSINE, 0.99]) == 1.0  # the best three, in any order
    assert math.isclose(generation_confidence(math.log(0.5)), 0.5)


def test_logprobs_are_averaged_in_when_present():
    scores = [CLOSE_MATCH_COSINE] * 3
    assert answer_confidence(scores, None) == 1.0
    assert math.isclose(answer_confidence(scores, math.log(0.2)), 0.6)
    assert answer_confidence(scores, float("nan")) == 1.0
