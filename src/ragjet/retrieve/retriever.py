"""Two-stage retrieval over one collection, sharded or not.

Stage 1 takes `coarse_k` candidates from each shard's vector index (approximate for IVF/HNSW) and from
BM25 under the collection's statistics; each shard rescores its candidates exactly against the
full-precision vectors in its chunk store, and the shards' lists are merged exactly (shards.py; a plain
collection is one shard). Stage 2 fuses the dense ranking with BM25's by reciprocal-rank fusion. If a
shard's vector index fails, BM25 is its backup: its candidates are still rescored exactly, and the result
says why it degraded; a shard that cannot be searched at all is named there too, and the others answer.
With a cross-encoder (retrieve.rerank), the best `cross_encoder_candidates` of that ranking are read again
together with the question and reordered, within a time budget (cross_encoder.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index.bm25 import BM25Stats
from ragjet.retrieve.cross_encoder import CrossEncoder
from ragjet.retrieve.fusion import reciprocal_rank_fusion
from ragjet.retrieve.shard_runner import LocalShards, ShardQuery, ShardRunner
from ragjet.retrieve.shards import MergedCandidates, merge
from ragjet.retrieve.types import SearchHit, SearchResult
from ragjet.store import AnyCollection, CollectionError
from ragjet.store.chunk_store import StoredChunk, check_filters
from ragjet.store.sharded import shard_name


class Retriever:
    def __init__(
        self, collection: AnyCollection, embedder: Embedder, settings: RetrieveSettings,
        cross_encoder: CrossEncoder | None = None, shards: ShardRunner | None = None,
    ):  # fmt: skip
        """`shards`: where the per-shard calls run (shard_runner.py); None: threads in this process."""
        collection.check_embedder(embedder.model_id, embedder.dim)
        self.collection, self.embedder, self.settings = collection, embedder, settings
        self.cross_encoder = cross_encoder
        self.shards = shards if shards is not None else LocalShards(collection)

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
        if filters:
            check_filters(filters)
        started = time.perf_counter()
        merged, unsearched = self._candidates(query, vector, max(self.settings.coarse_k, top_k), filters)
        searched = time.perf_counter()
        depth = max(top_k, self.settings.cross_encoder_candidates) if self.cross_encoder else top_k
        hits = self._fuse(merged, depth)
        note = None
        if self.cross_encoder is not None and hits:
            hits, note = self._cross_encode(query, hits, budget_s)
        return SearchResult(hits[:top_k], (searched - started) * 1e3, (time.perf_counter() - searched) * 1e3,
                            self._degraded(merged, unsearched), note)  # fmt: skip

    def _candidates(
        self, query: str, vector: np.ndarray, coarse_k: int, filters: Mapping[str, object] | None
    ) -> tuple[MergedCandidates, dict[int, str]]:
        """Every readable shard's candidates, merged, and the shards that could not be searched (with why).

        A shard that fails after reporting its BM25 statistics is dropped and the others are asked again, so
        that every score uses the statistics of exactly the shards that answered.
        """
        shards, unsearched = sorted(self.collection.shards), dict(self.collection.problems)
        while True:
            stats, failed = self.shards.stats(shards, query)
            unsearched |= failed
            shards = [number for number in shards if number not in unsearched]
            merged_stats = BM25Stats.merged(list(stats.values()))
            shard_query = ShardQuery(query, vector, coarse_k, merged_stats, self.settings.use_bm25, filters)
            parts, failed = self.shards.candidates(shards, shard_query)
            unsearched |= failed
            if not failed:
                break
            shards = [number for number in shards if number not in unsearched]
        if len(unsearched) == self.collection.index_params.num_shards:
            raise CollectionError(f"no shard of collection {self.collection.name!r} can be searched: "
                                  + "; ".join(unsearched.values()))  # fmt: skip
        return merge(list(parts.values()), coarse_k), unsearched

    def _degraded(self, merged: MergedCandidates, unsearched: dict[int, str]) -> str | None:
        """Why the result is not what the whole, healthy collection would give; None when it is."""
        sharded = self.collection.index_params.num_shards > 1
        reasons = [f"{shard_name(n)}: {r}" if sharded else r for n, r in sorted(merged.fallbacks.items())]
        reasons += [f"{reason}; its chunks were not searched" for _, reason in sorted(unsearched.items())]
        return "; ".join(reasons) or None

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

    def _fuse(self, merged: MergedCandidates, depth: int) -> list[SearchHit]:
        """The dense ranking (exact cosine, equal ones by id) fused with BM25's; the best `depth` as hits."""
        cosine = merged.cosine
        dense = sorted((i for i in merged.dense_ids.tolist() if i in cosine), key=lambda i: (-cosine[i], i))
        lexical = [i for i in merged.bm25_ids.tolist() if i in cosine]
        if lexical:
            ranked, fused = reciprocal_rank_fusion([np.asarray(dense), np.asarray(lexical)], self.settings.rrf_k)
            order, scores = ranked.tolist(), fused.tolist()
        else:
            order, scores = dense, [cosine[i] for i in dense]
        bm25 = dict(zip(merged.bm25_ids.tolist(), merged.bm25_scores.tolist(), strict=True))
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
            )
            for rank, c in enumerate(self._chunks(order[:depth], merged.owner), start=1)
        ]

    def _chunks(self, ids: list[int], owner: dict[int, int]) -> list[StoredChunk]:
        """The chunks `ids`, in that order, each read from the shard that holds it.

        Read here even when a shard runner searched the shard in another process: opening a shard's chunk store
        loads no index, chunk ids are collection-wide and never reused, so the text read is that chunk's (or
        missing, if deleted since, and dropped), and only the final few chunks are read instead of shipping the
        text of every candidate back over the wire.
        """
        by_shard: dict[int, list[int]] = {}
        for chunk in ids:
            by_shard.setdefault(owner[chunk], []).append(chunk)
        found = {
            c.id: c
            for number, chunks in by_shard.items()
            for c in self.collection.shards[number].store.chunks(np.asarray(chunks, dtype=np.int64))
        }
        return [found[i] for i in ids if i in found]
