"""Calibration math on synthetic answers: the logistic fit, the topic split, AUROC, Brier and calibration error."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ragjet.eval.calibration import (
    Judged,
    brier_score,
    expected_calibration_error,
    fit_confidence_model,
    fit_logistic,
    split_by_topic,
    uncalibrated_confidence,
)
from ragjet.eval.metrics import auroc
from ragjet.rag.confidence import ConfidenceSignals


def _signals(level: float, generation: float | None = None) -> ConfidenceSignals:
    return ConfidenceSignals(level, level if generation is None else generation, level, level, level, level)


def _answers(levels_right: list[tuple[float, bool]]) -> list[Judged]:
    return [Judged(f"q{i}", f"topic{i % 6}", _signals(x), right) for i, (x, right) in enumerate(levels_right)]


def test_fit_is_the_penalised_log_loss_minimum():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, 3))
    y = (rng.uniform(0, 1, 300) < 1 / (1 + np.exp(-(4 * x[:, 0] - 2 * x[:, 1] - 0.5)))).astype(float)
    weights, bias = fit_logistic(x, y, l2=1.0)
    p = 1 / (1 + np.exp(-(x @ weights + bias)))
    gradient = np.append(x.T @ (p - y) + 1.0 * weights, (p - y).sum())  # zero at the optimum of a convex loss
    assert np.abs(gradient).max() < 1e-6
    assert weights[0] > 2 and weights[1] < -0.5 and abs(weights[2]) < 1  # the generating signs, the noise near 0


def test_separable_answers_rank_perfectly_and_shuffled_labels_do_not():
    answers = _answers([(i / 100, i >= 50) for i in range(100)])
    model = fit_confidence_model(answers)
    fitted = [model.probability(a.signals) for a in answers]
    assert auroc(fitted, [a.right for a in answers]) == 1.0
    shuffled = [a.right for a in answers]
    random.Random(1).shuffle(shuffled)
    assert auroc(fitted, shuffled) == pytest.approx(0.5, abs=0.15)


def test_missing_signals_take_their_calibration_mean():
    answers = [
        Judged("a", "t", _signals(0.2, generation=0.1), False),
        Judged("b", "t", _signals(0.8, generation=0.5), True),
        Judged("c", "t", ConfidenceSignals(0.9, None, 0.9, None, None, 0.9), True),  # no logprobs, no content words
    ]
    model = fit_confidence_model(answers)
    fill = dict(zip(model.features, model.fill, strict=True))
    assert fill["generation"] == pytest.approx(0.3) and fill["grounding"] == pytest.approx(0.5)
    assert 0.0 < model.probability(ConfidenceSignals(0.5, None, None, None, None, None)) < 1.0


def test_calibration_needs_both_right_and_wrong_answers():
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_confidence_model(_answers([(0.5, True), (0.7, True)]))


def test_split_alternates_whole_topics():
    answers = _answers([(0.5, i % 2 == 0) for i in range(24)])
    calibration, held_out = split_by_topic(answers)
    assert {a.topic for a in calibration} == {"topic0", "topic2", "topic4"}
    assert {a.topic for a in held_out} == {"topic1", "topic3", "topic5"}
    assert len(calibration) + len(held_out) == 24


def test_brier_and_calibration_error_against_hand_computed_values():
    probabilities, labels = [0.9, 0.9, 0.2, 0.2], [True, False, False, False]
    assert brier_score(probabilities, labels) == pytest.approx((0.01 + 0.81 + 0.04 + 0.04) / 4)
    # bin [0.9, 1): right 1/2, mean 0.9 → 0.4; bin [0.2, 0.3): right 0, mean 0.2 → 0.2; each half the answers
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.3)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0


def test_uncalibrated_confidence_is_the_old_mean():
    assert uncalibrated_confidence(ConfidenceSignals(0.9, 0.3, 0.0, 0.6, 0.0, 0.0)) == pytest.approx(0.6)
    assert uncalibrated_confidence(ConfidenceSignals(0.9, None, 0.0, None, None, None)) == pytest.approx(0.9)
