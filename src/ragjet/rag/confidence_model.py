"""Confidence as a calibrated probability that the answer is right: logistic regression on the answer's signals.

A plain mean of the signals put right and wrong answers of the packaged SmolLM2 in the same 0.55-0.75 band, so the
review threshold could not tell them apart. The packaged model, `data/confidence-smollm2.json`, is fitted instead:
`ragjet eval pydoc-squad --calibrate src/ragjet/rag/data/confidence-smollm2.json` answers every question of the
shipped pydoc-squad set with the packaged SmolLM2 and MiniLM under the default settings, labels each answer right
(token F1 >= 0.5 or the gold span contained) or wrong, fits the weights on the calibration topics and writes, next
to them, the AUROC, Brier score and calibration error measured on the held-out topics. A different generator
answers differently: refit on its answers and point `rag.confidence_model` at the file. A signal that cannot be
measured for an answer (a backend without logprobs, a two-word answer) takes its mean over the calibration answers.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from ragjet.rag.confidence import ConfidenceSignals

PACKAGED_MODEL = Path(__file__).parent / "data" / "confidence-smollm2.json"
SIGNAL_NAMES = tuple(f.name for f in fields(ConfidenceSignals))


@dataclass(frozen=True, slots=True)
class ConfidenceModel:
    features: tuple[str, ...]  # names of ConfidenceSignals fields, in the order of `weights`
    weights: tuple[float, ...]
    bias: float
    fill: tuple[float, ...]  # each feature's value when an answer lacks it: its mean over the calibration answers

    def __post_init__(self) -> None:
        unknown = [name for name in self.features if name not in SIGNAL_NAMES]
        if unknown:
            raise ValueError(f"unknown confidence signals {unknown}; known: {', '.join(SIGNAL_NAMES)}")
        if not len(self.features) == len(self.weights) == len(self.fill):
            raise ValueError("a confidence model needs one weight and one fill value per feature")
        if not all(math.isfinite(v) for v in (*self.weights, *self.fill, self.bias)):
            raise ValueError("confidence model weights must be finite numbers")

    def vector(self, signals: ConfidenceSignals) -> list[float]:
        """The features of one answer, missing signals filled in."""
        values = [getattr(signals, name) for name in self.features]
        return [fill if value is None else value for value, fill in zip(values, self.fill, strict=True)]

    def probability(self, signals: ConfidenceSignals) -> float:
        """The estimated chance that the answer is right, in (0, 1)."""
        logit = self.bias + sum(w * x for w, x in zip(self.weights, self.vector(signals), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))

    def to_json(self, report: dict[str, object]) -> str:
        """The model, with `report` (how and on what it was fitted, held-out figures) kept beside it."""
        body = {"features": self.features, "weights": self.weights, "bias": self.bias, "fill": self.fill}
        return json.dumps({**body, "fit": report}, indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> ConfidenceModel:
        """Raises ValueError naming the file when it is missing or is not a confidence model."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            return cls(tuple(body["features"]), tuple(map(float, body["weights"])), float(body["bias"]),
                       tuple(map(float, body["fill"])))  # fmt: skip
        except FileNotFoundError:
            raise ValueError(f"confidence model not found: {path}") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a confidence model ({exc})") from None


@functools.lru_cache(maxsize=4)
def load_confidence_model(path: Path | None = None) -> ConfidenceModel:
    """The model at `path` (rag.confidence_model), or the packaged one fitted for SmolLM2; read once per path."""
    return ConfidenceModel.from_json(path.expanduser() if path is not None else PACKAGED_MODEL)
