"""Reciprocal-rank fusion: combine rankings whose scores are not comparable (cosine vs BM25) by rank alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reciprocal_rank_fusion(rankings: Sequence[np.ndarray], rrf_k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Fuse id rankings (best first, -1 = padding) into (ids, scores), best first.

    Each list adds 1 / (rrf_k + rank) to the ids it ranks (rank 1-based); ties keep first-seen order,
    so the first ranking breaks them.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk in enumerate(int(i) for i in ranking if i >= 0):
            scores[chunk] = scores.get(chunk, 0.0) + 1.0 / (rrf_k + rank + 1)
    order = sorted(scores, key=lambda c: -scores[c])  # sorted() is stable: equal scores keep insertion order
    return np.asarray(order, dtype=np.int64), np.asarray([scores[c] for c in order], dtype=np.float64)
