"""Confidence of an answer: how well retrieval matched, how sure the generator was, how grounded the text is.

Each signal lands in [0, 1]. Retrieval uses the dense (cosine) similarity of the best sources, because
fused rank scores say nothing absolute; generation uses the geometric-mean token probability,
exp(mean logprob); grounding is the share of the answer's content words found in the cited sources (a
fluent answer that the sources do not support is the failure a reviewer must see). The score is their
mean; `ragjet eval` reports how well it separates right from wrong answers (AUROC).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# Cosine similarities of a sentence embedder: below ~0.15 a source is unrelated, above ~0.65 a close match.
UNRELATED_COSINE = 0.15
CLOSE_MATCH_COSINE = 0.65
TOP_SCORES_USED = 3
_WORD = re.compile(r"[a-z0-9_]+")
# Function words carry no evidence of grounding; everything else must appear in some source.
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in is it its not of on or so that the "  # noqa: SIM905
    "their then there these this to was were what when which who why will with you your".split()
)


def retrieval_confidence(dense_scores: Sequence[float]) -> float:
    """Mean of the best `TOP_SCORES_USED` cosine scores, mapped linearly onto [0, 1]; 0 without sources."""
    best = sorted(dense_scores, reverse=True)[:TOP_SCORES_USED]
    if not best:
        return 0.0
    mean = sum(best) / len(best)
    return min(1.0, max(0.0, (mean - UNRELATED_COSINE) / (CLOSE_MATCH_COSINE - UNRELATED_COSINE)))


def generation_confidence(mean_logprob: float) -> float:
    """Geometric-mean probability of the generated tokens."""
    return math.exp(min(0.0, mean_logprob))


def grounding(answer: str, sources: Sequence[str]) -> float | None:
    """Share of the answer's content words that occur in the sources; None for an answer without any."""
    words = [w for w in _WORD.findall(answer.lower()) if w not in _STOPWORDS]
    if not words:
        return None
    vocabulary = set(_WORD.findall(" ".join(sources).lower()))
    return sum(w in vocabulary for w in words) / len(words)


def answer_confidence(
    dense_scores: Sequence[float], mean_logprob: float | None, grounded: float | None = None
) -> float:
    """Mean of the signals that are available: retrieval always, generation and grounding when known."""
    signals = [retrieval_confidence(dense_scores)]
    if mean_logprob is not None and not math.isnan(mean_logprob):
        signals.append(generation_confidence(mean_logprob))
    if grounded is not None:
        signals.append(grounded)
    return sum(signals) / len(signals)
