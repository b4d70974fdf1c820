"""Retrieval without generation: the embedder and the collections, never the LLM.

Retrieval evaluation must run where no generator is available (or wanted), so it cannot use
`RagPipeline.start()`, which loads the LLM backend too. This is the same embedder → batcher →
retriever path the pipeline takes, and its stage timings come from the retriever itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ragjet.config import Settings
from ragjet.embed.batcher import DynamicBatcher
from ragjet.embed.embedder import Embedder
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.pipeline import IngestReport, ingest_paths
from ragjet.rag.collections import CollectionRegistry
from ragjet.rag.types import StageTimings
from ragjet.retrieve import SearchHit


class RetrievalOnly:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.collections = CollectionRegistry(settings)
        self._embedder: Embedder | None = None
        self._batcher: DynamicBatcher | None = None

    async def start(self) -> None:
        embed = self.settings.embed
        self._embedder = await asyncio.to_thread(Embedder.load, embed.model, device=embed.device)
        self._batcher = DynamicBatcher(self._embedder, max_batch=embed.batch_size, max_wait_ms=embed.max_wait_ms)
        self.collections.embedder = self._embedder

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._batcher = self._embedder = None

    async def ingest(self, collection: str, paths: list[Path]) -> IngestReport:
        embedder = self._started()[0]
        chunk = self.settings.chunk
        chunker = Chunker(embedder.tokenizer, max_tokens=chunk.max_tokens, overlap_tokens=chunk.overlap_tokens)

        def run() -> IngestReport:
            with self.collections.writing(collection) as store:
                return ingest_paths(store, paths, embedder, chunker)

        return await asyncio.to_thread(run)

    async def search(self, query: str, collection: str, top_k: int) -> tuple[list[SearchHit], StageTimings]:
        """The top `top_k` chunk hits and the embed/search/rerank timings of this one query."""
        batcher = self._started()[1]
        retriever = self.collections.retriever(collection)
        timings = StageTimings()
        started = time.perf_counter()
        vector = await batcher.embed(query)
        timings.embed_ms = (time.perf_counter() - started) * 1e3
        result = await asyncio.to_thread(retriever.search_vector, query, vector, top_k, None)
        timings.search_ms, timings.rerank_ms = result.search_ms, result.rerank_ms
        timings.total_ms = (time.perf_counter() - started) * 1e3
        return result.hits, timings

    def delete_collection(self, name: str) -> None:
        self.collections.delete(name)

    def _started(self) -> tuple[Embedder, DynamicBatcher]:
        if self._embedder is None or self._batcher is None:
            raise RuntimeError("retrieval is not started: await start() first")
        return self._embedder, self._batcher
