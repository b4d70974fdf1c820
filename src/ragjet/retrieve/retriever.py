"""Two-stage retrieval over one collection.

Stage 1 takes `coarse_k` candidates from the collection's vector index (approximate for IVF/HNSW) and
from BM25. Stage 2 rescores the vector candidates exactly against the full-precision vectors in the
chunk store and fuses that ranking with BM25's by reciprocal-rank fusion. If the vector index fails,
BM25 is the backup: its candidates are still rescored exactly, and the result says why it degraded. With a
cross-encoder (retrieve.rerank), the best `cross_encoder_candidates` of that ranking are read again together with
the question and reordered, within a time budget (cross_encoder.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

import numpy as np

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.retrieve.cross_encoder import CrossEncoder
from ragjet.retrieve.fusion import reciprocal_rank_fusion
from ragjet.retrieve.types import SearchHit, SearchResult
from ragjet.store import Collection

log = logging.getLogger(__name__)
NO_IDS = np.empty(0, dtype=np.int64)


class Retriever:
    def __init__(
        self, collection: Collection, embedder: Embedder, settings: RetrieveSettings,
        cross_encoder: CrossEncoder | None = None,
    ):  # fmt: skip
        collection.check_embedder(embedder.model_id, embedder.dim)
        self.collection, self.embedder, self.settings = collection, embedder, settings
        self.cross_encoder = cross_encoder

    def search(self, query: str, top_k: int | None = None, filters: Mapping[str, object] | None = None) -> SearchResult:
        vector = self.embedder.embed([query])[0]
        return self.search_vector(query, vector, top_k if top_k is not None else self.settings.top_k, filters)

    def search_vector(
        self, query: str, vector: np.ndarray, top_k: int, filters: Mapping[str, object] | None = None,
        budget_s: float | None = None,
    ) -> SearchResult:  # fmt: skip
        """Search with a query already embedded (the pipeline batches query embeddings across requests);
        `budget_s`: time the cross-encoder may still take (the request's deadline), if one is configured."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        started = time.perf_counter()
        allowed = self.collection.store.ids_matching(filters) if filters else None
        if allowed is not None and len(allowed) == 0:
            return SearchResult([], (time.perf_counter() - started) * 1e3, 0.0)
        coarse_k = max(self.settings.coarse_k, top_k)
        dense_ids, fallback = self._vector_candidates(vector, coarse_k, allowed)
        bm25_ids, bm25_scores = NO_IDS, np.empty(0)
        if self.settings.use_bm25 or fallback:
            bm25_scores, bm25_ids = self.collection.bm25.search(query, coarse_k, allowed)
        searched = time.perf_counter()
        depth = max(top_k, self.settings.cross_encoder_candidates) if self.cross_encoder else top_k
        hits = self._rerank(vector, dense_ids if fallback is None else bm25_ids, bm25_ids, bm25_scores, depth)
        note = None
        if self.cross_encoder is not None and hits:
            hits, note = self._cross_encode(query, hits, budget_s)
        return SearchResult(hits[:top_k], (searched - started) * 1e3, (time.perf_counter() - searched) * 1e3,
                            fallback, note)  # fmt: skip

    def _cross_encode(self, query: str, hits: list[SearchHit], budget_s: float | None) -> tuple[list[SearchHit], str]:
        """Hits reordered by the cross-encoder, and what it managed within its budget."""
        assert self.cross_encoder is not None
        budget = self.settings.cross_encoder_budget_ms / 1e3
        budget = budget if budget_s is None else min(budget, max(0.0, budget_s / 2))  # leave the LLM its share
        reranked = self.cross_encoder.rerank(query, [h.text for h in hits], budget_s=budget)
        ordered = [dataclasses.replace(hits[i], rank=rank) for rank, i in enumerate(reranked.order, start=1)]
        note = f"cross-encoder scored {reranked.num_scored} of {len(hits)} in {reranked.ms:.0f} ms"
        if reranked.num_scored < len(hits):
            note += " (budget spent: the rest kept their fused order)"
        return ordered, note

    def _vector_candidates(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, str | None]:
        try:
            _, ids = self.collection.index.search(np.asarray(vector, dtype=np.float32)[None, :], k, allowed)
            return ids[0], None
        except Exception as exc:  # any failure of the primary index: the backup answers, and says so
            kind = self.collection.index_params.kind
            reason = f"{kind} index failed ({type(exc).__name__}: {exc}); answered by BM25"
            log.warning("collection %r: %s", self.collection.name, reason)
            return NO_IDS, reason

    def _rerank(
        self, vector: np.ndarray, dense_ids: np.ndarray, bm25_ids: np.ndarray, bm25_scores: np.ndarray, top_k: int
    ) -> list[SearchHit]:
        candidates = np.unique(np.concatenate([dense_ids[dense_ids >= 0], bm25_ids[bm25_ids >= 0]]))
        found, vectors = self.collection.store.vectors(candidates)
        if not len(found):
            return []
        cosine = dict(zip(found.tolist(), (vectors @ np.asarray(vector, dtype=np.float32)).tolist(), strict=True))
        dense = sorted((i for i in dense_ids.tolist() if i in cosine), key=lambda i: -cosine[i])
        lexical = [i for i in bm25_ids.tolist() if i in cosine]
        if lexical:
            ranked, fused = reciprocal_rank_fusion([np.asarray(dense), np.asarray(lexical)], self.settings.rrf_k)
            order, scores = ranked.tolist(), fused.tolist()
        else:
            order, scores = dense, [cosine[i] for i in dense]
        bm25 = dict(zip(bm25_ids.tolist(), bm25_scores.tolist(), strict=True))
        chunks = self.collection.store.chunks(np.asarray(order[:top_k], dtype=np.int64))
        score_of = dict(zip(order, scores, strict=True))
        return [
            SearchHit(
                rank,
                c.chunk_id,
                score_of[c.id],
                cosine[c.id],
                bm25.get(c.id),
                c.source,
                c.title,
                c.heading,
                c.page,
                c.text,
            )  # fmt: skip
            for rank, c in enumerate(chunks, start=1)
        ]
