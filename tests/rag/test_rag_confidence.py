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
    grounding,
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


def test_grounding_counts_content_words_found_in_the_sources():
    sources = ["Augustin Fresnel designed the lens in 1822 to replace heavy mirrors."]
    assert grounding("Fresnel designed the lens in 1822.", sources) == 1.0
    assert (
        grounding("The lens was invented by Edison in 1900.", sources) == 0.25
    )  # only "lens" of lens, invented, edison, 1900
    assert grounding("the of and", sources) is None  # nothing to check


def test_ungrounded_answers_lower_confidence():
    scores, logprob = [0.65, 0.65], math.log(0.9)
    grounded = answer_confidence(scores, logprob, grounding("Fresnel designed it", ["Fresnel designed it"]))
    invented = answer_confidence(scores, logprob, grounding("Edison patented it", ["Fresnel designed it"]))
    assert grounded > invented
