"""Retrieval and answer metrics against values computed by hand from their definitions."""

from __future__ import annotations

import math

import pytest

from ragjet.eval.metrics import (
    answer_contained,
    auroc,
    exact_match,
    is_correct,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    recall_at_k,
    token_f1,
    unique_in_order,
)

RANKED = ["a", "b", "c", "d"]
QRELS = {"b": 2, "d": 1, "e": 1, "z": 0}  # "e" is relevant but never retrieved; "z" is judged irrelevant


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1 / 3), (4, 2 / 3), (10, 2 / 3)])
def test_recall_counts_relevant_documents_found(k: int, expected: float):
    assert recall_at_k(RANKED, QRELS, k) == pytest.approx(expected)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_hit():
    assert mrr_at_k(RANKED, QRELS, 10) == pytest.approx(0.5)
    assert mrr_at_k(RANKED, QRELS, 1) == 0.0
    assert mrr_at_k(["z", "x", "d"], QRELS, 10) == pytest.approx(1 / 3)


def test_ndcg_uses_graded_gains_and_an_ideal_over_all_judged_documents():
    dcg = 2 / math.log2(3) + 1 / math.log2(5)  # "b" (2) at rank 2, "d" (1) at rank 4
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # grades 2, 1, 1
    assert ndcg_at_k(RANKED, QRELS, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKED, QRELS, 10) == pytest.approx(0.54059, abs=1e-5)


def test_ndcg_is_one_for_the_ideal_ranking_and_cut_at_k():
    assert ndcg_at_k(["b", "d", "e"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "e", "d"], QRELS, 10) == pytest.approx(1.0)  # equal grades may swap
    assert ndcg_at_k(["a", "b"], QRELS, 1) == 0.0


def test_queries_without_relevant_documents_score_zero():
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        assert metric(RANKED, {"a": 0}, 10) == 0.0


def test_unique_in_order_keeps_first_occurrences():
    assert unique_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("PEP-8's rule", "pep8s rule"),
        ("theory", "theory"),  # articles only as whole words
    ],
)
def test_normalize_answer_follows_the_squad_script(text: str, expected: str):
    assert normalize_answer(text) == expected


def test_exact_match_takes_the_best_gold_answer():
    assert exact_match("the Guido van Rossum.", ["Guido van Rossum"]) == 1.0
    assert exact_match("Guido", ["Guido van Rossum", "van Rossum"]) == 0.0
    assert exact_match("van rossum", ["Guido van Rossum", "van Rossum"]) == 1.0


def test_token_f1_is_the_best_bag_of_words_overlap():
    assert token_f1("Guido", ["Guido van Rossum"]) == pytest.approx(0.5)  # p=1, r=1/3
    assert token_f1("Guido van Rossum", ["x", "Guido van"]) == pytest.approx(0.8)  # p=2/3, r=1
    assert token_f1("nothing shared", ["Guido"]) == 0.0
    assert token_f1("the", ["a"]) == 0.0  # both normalise to nothing


def test_answer_contained_matches_whole_normalised_words():
    assert answer_contained("It was created by Guido van Rossum [1].", ["Guido van Rossum"]) == 1.0
    assert answer_contained("CPython is written in C.", ["C"]) == 1.0
    assert answer_contained("CPython is the reference.", ["C"]) == 0.0
    assert answer_contained("anything", ["the"]) == 0.0  # an answer that normalises to nothing never matches


def _pairwise_auroc(scores: list[float], labels: list[bool]) -> float:
    """The definition itself: over every (right, wrong) pair, 1 if the right one scores higher, 1/2 on a tie."""
    pairs = [
        (r, w)
        for r, lr in zip(scores, labels, strict=True)
        for w, lw in zip(scores, labels, strict=True)
        if lr and not lw
    ]
    return sum(1.0 if r > w else 0.5 if r == w else 0.0 for r, w in pairs) / len(pairs)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.9, 0.8, 0.3, 0.1], [True, True, False, False]),  # perfect separation
        ([0.1, 0.3, 0.8, 0.9], [True, True, False, False]),  # perfectly inverted
        ([0.5, 0.5, 0.5, 0.2, 0.7], [True, False, True, False, False]),  # ties across classes
        ([0.4, 0.4, 0.4], [True, False, False]),  # all tied
    ],
)
def test_auroc_matches_the_pairwise_definition(scores: list[float], labels: list[bool]):
    assert auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels))


def test_auroc_needs_both_classes_and_correctness_is_f1_or_containment():
    assert auroc([0.2, 0.9], [True, True]) is None
    assert is_correct("It was Guido van Rossum, in 1991", ["Guido van Rossum"])  # contained
    assert is_correct("van Rossum", ["Guido van Rossum"])  # F1 0.8
    assert not is_correct("Linus", ["Guido van Rossum"])
