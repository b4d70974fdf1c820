"""What one shard contributes to a query, and the exact merge of those contributions.

A query reaches every shard twice, each time as a plain function of one shard whose answer is numpy arrays,
so a shard can live in another process (a Ray retrieval replica) and its answer cross the wire:

1. `BM25Index.stats`: the shard's document count, total length and the document frequencies of the query's
   terms. Summed (`BM25Stats.merged`), they are the collection's. BM25 scores are only comparable across
   shards under the same statistics, and the candidates themselves depend on them (a shard's best keyword
   matches change with the idf), so scoring BM25 after the merge, over the merged candidates, could not
   choose the candidates; the statistics cost one small exchange instead.
2. `shard_candidates`: the shard's best `coarse_k` by its vector index and by BM25 under the collection's
   statistics, every one rescored exactly against the vectors in the shard's chunk store.

`merge` keeps the best `coarse_k` of each list over all shards, equal scores by ascending chunk id: those are
the lists one unsharded index returns, exactly for the flat index (a chunk's score does not depend on what
else is stored); an ANN index approximates per shard instead of once. Fusion (retriever.py) runs on the
merged lists, so its ranks are collection-wide.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragjet.index.bm25 import BM25Stats
from ragjet.store import Collection

log = logging.getLogger(__name__)
NO_IDS = np.empty(0, dtype=np.int64)
NO_SCORES = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ShardCandidates:
    """One shard's answer to one query."""

    shard: int
    dense_ids: np.ndarray  # (n,) int64, best first by the shard's vector index
    dense_scores: np.ndarray  # (n,) the index's scores; exact cosines where BM25 stood in for it
    bm25_ids: np.ndarray  # (m,) int64, best first under the collection's BM25 statistics
    bm25_scores: np.ndarray  # (m,) float64
    rescored_ids: np.ndarray  # (r,) int64: the candidates above still stored
    cosine: np.ndarray  # (r,) float64 exact cosine of each to the query
    fallback: str | None = None  # why BM25 stood in for the shard's vector index

    @classmethod
    def none(cls, shard: int) -> ShardCandidates:
        """No candidates: the query's filters match nothing on this shard."""
        return cls(shard, NO_IDS, NO_SCORES, NO_IDS, NO_SCORES, NO_IDS, NO_SCORES)


@dataclass(frozen=True, slots=True)
class MergedCandidates:
    dense_ids: np.ndarray  # (<= coarse_k,) int64, best first over every shard
    bm25_ids: np.ndarray  # (<= coarse_k,) int64, best first over every shard
    bm25_scores: np.ndarray  # (<= coarse_k,) float64
    cosine: dict[int, float]  # chunk id -> exact cosine
    owner: dict[int, int]  # chunk id -> shard holding it
    fallbacks: dict[int, str]  # shard -> why BM25 stood in for its index


def shard_candidates(
    shard: int, collection: Collection, *, query: str, vector: np.ndarray, coarse_k: int, stats: BM25Stats,
    use_bm25: bool, filters: Mapping[str, object] | None = None,
) -> ShardCandidates:  # fmt: skip
    """Stage 1 and the exact rescoring on one shard (`collection` is the shard, opened on its own)."""
    allowed = collection.store.ids_matching(filters) if filters else None
    if allowed is not None and len(allowed) == 0:
        return ShardCandidates.none(shard)
    query_vector = np.asarray(vector, dtype=np.float32)
    dense_ids, dense_scores, fallback = _vector_candidates(collection, query_vector, coarse_k, allowed)
    bm25_scores, bm25_ids = NO_SCORES, NO_IDS
    if use_bm25 or fallback:
        bm25_scores, bm25_ids = collection.bm25.search(query, coarse_k, allowed, stats)
        bm25_scores, bm25_ids = bm25_scores[bm25_ids >= 0], bm25_ids[bm25_ids >= 0]
    found, vectors = collection.store.vectors(np.unique(np.concatenate([dense_ids, bm25_ids])))
    # float64, row by row: a chunk's cosine must not depend on which other chunks are rescored with it
    cosine = (
        np.einsum("ij,j->i", vectors.astype(np.float64), query_vector.astype(np.float64)) if len(found) else NO_SCORES
    )
    if fallback is not None:
        dense_ids, dense_scores = found, cosine
    return ShardCandidates(shard, dense_ids, dense_scores, bm25_ids, bm25_scores, found, cosine, fallback)


def _vector_candidates(
    collection: Collection, vector: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, str | None]:
    try:
        scores, ids = collection.index.search(vector[None, :], k, allowed)
        return ids[0][ids[0] >= 0], scores[0][ids[0] >= 0], None
    except Exception as exc:  # any failure of the primary index: the backup answers, and says so
        reason = f"{collection.index_params.kind} index failed ({type(exc).__name__}: {exc}); answered by BM25"
        log.warning("collection %r: %s", collection.name, reason)
        return NO_IDS, NO_SCORES, reason


def merge(parts: Sequence[ShardCandidates], coarse_k: int) -> MergedCandidates:
    """The best `coarse_k` dense and BM25 candidates over all shards; equal scores by ascending chunk id."""
    dense_ids, _ = _best([p.dense_ids for p in parts], [p.dense_scores for p in parts], coarse_k)
    bm25_ids, bm25_scores = _best([p.bm25_ids for p in parts], [p.bm25_scores for p in parts], coarse_k)
    cosine = {i: c for p in parts for i, c in zip(p.rescored_ids.tolist(), p.cosine.tolist(), strict=True)}
    owner = {i: p.shard for p in parts for i in p.rescored_ids.tolist()}
    fallbacks = {p.shard: p.fallback for p in parts if p.fallback is not None}
    return MergedCandidates(dense_ids, bm25_ids, bm25_scores, cosine, owner, fallbacks)


def _best(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    all_ids = np.concatenate([NO_IDS, *ids])
    all_scores = np.concatenate([NO_SCORES, *(s.astype(np.float64) for s in scores)])
    top = np.lexsort((all_ids, -all_scores))[:k]
    return all_ids[top], all_scores[top]
