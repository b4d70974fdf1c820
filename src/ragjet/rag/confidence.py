"""A first confidence score for an answer: how well retrieval matched, and how sure the generator was.

Both signals land in [0, 1] and are averaged. Retrieval uses the dense (cosine) similarity of the best
sources, because fused rank scores say nothing absolute; generation uses the geometric-mean token
probability, exp(mean logprob). Grounding overlap is left to the reliability layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Cosine similarities of a sentence embedder: below ~0.15 a source is unrelated, above ~0.65 a close match.
UNRELATED_COSINE = 0.15
CLOSE_MATCH_COSINE = 0.65
TOP_SCORES_USED = 3


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


def answer_confidence(dense_scores: Sequence[float], mean_logprob: float | None) -> float:
    """Retrieval confidence, averaged with generation confidence when the backend reported logprobs."""
    retrieval = retrieval_confidence(dense_scores)
    if mean_logprob is None or math.isnan(mean_logprob):
        return retrieval
    return (retrieval + generation_confidence(mean_logprob)) / 2
