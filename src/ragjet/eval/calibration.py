"""Fit the confidence model on one half of a SQuAD set's answers and measure it on the other half.

The split is by topic (a SQuAD article): the sorted titles alternate between calibration and held-out, so no
held-out question shares a paragraph, or a topic, with a question the weights were fitted on. Labels are
`is_correct` (token F1 >= 0.5 or the gold span contained). The fit is L2-regularised logistic regression by
Newton's method: five features and a few hundred answers need nothing more, and the result is deterministic.
Held-out figures: AUROC of the fitted probability and, for comparison, of the mean of the retrieval, generation
and grounding signals (the confidence ragjet reported before it was calibrated); Brier score; expected calibration
error over ten equal-width bins; and which share of the wrong (and of the right) answers falls below the review
threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragjet.eval.datasets import EvalDataset
from ragjet.eval.metrics import CORRECT_F1, auroc, is_correct
from ragjet.eval.runner import QueryOutcome
from ragjet.rag.confidence import ConfidenceSignals
from ragjet.rag.confidence_model import SIGNAL_NAMES, ConfidenceModel

L2_PENALTY = 1.0  # on the weights, not the bias: a few hundred answers, five features
NEWTON_STEPS = 50
CALIBRATION_BINS = 10
UNCALIBRATED_SIGNALS = ("retrieval", "generation", "grounding")  # averaged by the confidence before calibration


@dataclass(frozen=True, slots=True)
class Judged:
    """One answered question: its signals, the confidence the model gives them, and whether it was right."""

    query_id: str
    topic: str
    signals: ConfidenceSignals
    right: bool


def judged_answers(dataset: EvalDataset, outcomes: Sequence[QueryOutcome]) -> list[Judged]:
    """The outcomes that have an answer, signals and gold answers ("not found" answers have no signals)."""
    topics = {doc.id: doc.title for doc in dataset.corpus}
    queries = {q.id: q for q in dataset.queries}
    return [
        Judged(o.query_id, topics[next(iter(queries[o.query_id].qrels))], o.signals,
               is_correct(o.answer, queries[o.query_id].answers))
        for o in outcomes
        if o.answer is not None and o.signals is not None and queries[o.query_id].answers
    ]  # fmt: skip


def split_by_topic(judged: Sequence[Judged]) -> tuple[list[Judged], list[Judged]]:
    """(calibration, held-out): the sorted topics alternate, the first going to calibration."""
    titles = sorted({j.topic for j in judged})
    calibration = set(titles[::2])
    return [j for j in judged if j.topic in calibration], [j for j in judged if j.topic not in calibration]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2_PENALTY) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising the log loss plus `l2`/2 · |weights|², for x (N, F) and 0/1 labels y (N,)."""
    n, f = x.shape
    design = np.hstack([x, np.ones((n, 1))])  # (N, F + 1): the last column carries the bias
    penalty = np.diag([l2] * f + [0.0])
    theta = np.zeros(f + 1)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (p - y) + penalty @ theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:f], float(theta[f])


def fit_confidence_model(calibration: Sequence[Judged], features: Sequence[str] = SIGNAL_NAMES) -> ConfidenceModel:
    """Logistic regression of right/wrong on `features`; missing signals are filled with their calibration mean."""
    if len({j.right for j in calibration}) < 2:
        raise ValueError("calibration needs both right and wrong answers")
    fill = tuple(_mean_present([getattr(j.signals, name) for j in calibration]) for name in features)
    unfitted = ConfidenceModel(tuple(features), (0.0,) * len(features), 0.0, fill)
    x = np.array([unfitted.vector(j.signals) for j in calibration])
    weights, bias = fit_logistic(x, np.array([float(j.right) for j in calibration]))
    return ConfidenceModel(tuple(features), tuple(float(w) for w in weights), bias, fill)


def _mean_present(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0


def uncalibrated_confidence(signals: ConfidenceSignals) -> float:
    """The mean of the available retrieval, generation and grounding signals: ragjet's confidence before calibration."""
    values = [v for name in UNCALIBRATED_SIGNALS if (v := getattr(signals, name)) is not None]
    return sum(values) / len(values)


def brier_score(probabilities: Sequence[float], labels: Sequence[bool]) -> float:
    return sum((p - float(y)) ** 2 for p, y in zip(probabilities, labels, strict=True)) / len(labels)


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[bool], bins: int = CALIBRATION_BINS
                               ) -> float:  # fmt: skip
    """Mean |share right − mean confidence| over equal-width confidence bins, weighted by the answers in each."""
    total = 0.0
    for b in range(bins):
        inside = [(p, y) for p, y in zip(probabilities, labels, strict=True)
                  if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p == 1.0)]  # fmt: skip
        if inside:
            gap = sum(float(y) for _, y in inside) / len(inside) - sum(p for p, _ in inside) / len(inside)
            total += abs(gap) * len(inside)
    return total / len(labels)


def calibration_report(model: ConfidenceModel, calibration: Sequence[Judged], held_out: Sequence[Judged],
                       review_threshold: float) -> dict[str, object]:  # fmt: skip
    """The figures written beside the fitted weights, all measured on `held_out`."""
    labels = [j.right for j in held_out]
    fitted = [model.probability(j.signals) for j in held_out]
    below = [p < review_threshold for p in fitted]
    num_wrong = labels.count(False)
    return {
        "label": f"right = token F1 >= {CORRECT_F1} or the gold answer contained",
        "split": "by topic: sorted titles alternate, the first to calibration",
        "num_calibration": len(calibration),
        "num_calibration_right": sum(j.right for j in calibration),
        "num_held_out": len(held_out),
        "num_held_out_right": sum(labels),
        "held_out_auroc": auroc(fitted, labels),
        "held_out_auroc_uncalibrated_mean": auroc([uncalibrated_confidence(j.signals) for j in held_out], labels),
        "held_out_auroc_per_signal": {
            name: auroc([model.vector(j.signals)[i] for j in held_out], labels) for i, name in enumerate(model.features)
        },
        "held_out_brier": brier_score(fitted, labels),
        "held_out_ece": expected_calibration_error(fitted, labels),
        "review_threshold": review_threshold,
        "wrong_flagged_for_review": sum(b for b, y in zip(below, labels, strict=True) if not y) / max(num_wrong, 1),
        "right_flagged_for_review": sum(b for b, y in zip(below, labels, strict=True) if y) / max(sum(labels), 1),
    }


def calibrate(dataset: EvalDataset, outcomes: Sequence[QueryOutcome], review_threshold: float
              ) -> tuple[ConfidenceModel, dict[str, object]]:  # fmt: skip
    """Fit on the calibration topics of an evaluated SQuAD set; the report holds the held-out figures."""
    calibration, held_out = split_by_topic(judged_answers(dataset, outcomes))
    model = fit_confidence_model(calibration)
    return model, {"dataset": dataset.name, **calibration_report(model, calibration, held_out, review_threshold)}
