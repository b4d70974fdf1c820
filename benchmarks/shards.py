"""Sharded search latency: one synthetic collection stored as 1, 2 and 4 shards, searched with the same queries.

A search of a sharded collection asks every shard for its BM25 statistics, then (a thread per shard) for its
candidates, rescored exactly from its chunk store, and merges them (retrieve/shards.py). The suite measures what
that costs or saves on this host: each query runs on every layout in turn (the order rotating), so contention
from other work falls on all layouts alike, and the top-10 of every layout is checked against the single shard's
(the flat index makes them equal). The 1-shard collection is the peer: the same collection, unsharded.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import BenchRow, machine_description
from benchmarks.search import DIM, K, clustered_vectors
from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.ingest.document import Chunk, Document, Section, chunk_id
from ragjet.retrieve import Retriever
from ragjet.store import AnyCollection, create_collection, open_collection

TITLE = "Sharded collections: search latency at 1, 2 and 4 shards (synthetic chunks, flat index, same queries)"
SUITE = "shards"
NUM_WORDS = 2000  # vocabulary of the synthetic texts: a skewed (Zipf) draw, so BM25 meets common and rare terms


@dataclass(frozen=True, slots=True)
class ShardsBenchConfig:
    num_chunks: int
    chunks_per_document: int  # one transaction per document, as ingestion writes
    num_queries: int
    shard_counts: tuple[int, ...]


QUICK = ShardsBenchConfig(10_000, 50, 50, (1, 2, 4))
FULL = ShardsBenchConfig(100_000, 50, 400, (1, 2, 4))


def words(rng: np.random.Generator, n: int) -> str:
    ranks = np.minimum(rng.zipf(1.2, size=n), NUM_WORDS) - 1
    return " ".join(f"w{r:04d}" for r in ranks)


def documents(cfg: ShardsBenchConfig) -> list[tuple[Document, list[Chunk], np.ndarray]]:
    """(document, chunks, (chunks, DIM) vectors): texts of 20-60 words, vectors from the search suite's mixture."""
    rng, vectors = np.random.default_rng(3), clustered_vectors(cfg.num_chunks, seed=2)
    out = []
    for start in range(0, cfg.num_chunks, cfg.chunks_per_document):
        source = f"synthetic/doc-{start // cfg.chunks_per_document:06d}.txt"
        texts = [
            words(rng, int(rng.integers(20, 60))) for _ in range(min(cfg.chunks_per_document, cfg.num_chunks - start))
        ]
        chunks = [Chunk(chunk_id(source, n, t), source, n, t, len(t.split())) for n, t in enumerate(texts)]
        document = Document(source, source, tuple(Section(t) for t in texts), f"{start:064x}")
        out.append((document, chunks, vectors[start : start + len(texts)]))
    return out


def build(root: Path, num_shards: int, docs: list, embedder: Embedder) -> tuple[AnyCollection, float]:
    """Write the documents, then reopen: searches read the saved indexes, as a server does."""
    started = time.perf_counter()
    name = f"shards-{num_shards}"
    collection = create_collection(root, name, embedder.model_id, DIM, IndexParams(num_shards=num_shards), "cpu")
    with collection.writer():
        for document, chunks, vectors in docs:
            collection.put_document(document, chunks, vectors)
    return open_collection(root, name, "cpu"), time.perf_counter() - started


def measure(retrievers: dict[int, Retriever], queries: list[tuple[str, np.ndarray]]) -> tuple[dict, int]:
    """Latencies (ms) per layout, each query run on every layout in a rotating order; and how many queries'
    top-10 differed from the single shard's."""
    for retriever in retrievers.values():  # warm-up: derived files loaded, threads started
        retriever.search_vector(*queries[0], top_k=K)
    times: dict[int, list[float]] = {n: [] for n in retrievers}
    order, num_differing = list(retrievers), 0
    for i, (text, vector) in enumerate(queries):
        top: dict[int, list[str]] = {}
        for n in order[i % len(order) :] + order[: i % len(order)]:
            started = time.perf_counter()
            hits = retrievers[n].search_vector(text, vector, top_k=K).hits
            times[n].append((time.perf_counter() - started) * 1e3)
            top[n] = [h.chunk_id for h in hits]
        num_differing += any(ids != top[order[0]] for ids in top.values())
    return times, num_differing


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def run(quick: bool) -> tuple[list[BenchRow], str]:
    cfg = QUICK if quick else FULL
    embedder = Embedder.load("all-MiniLM-L6-v2", device="cpu")  # the collections' identity; queries come embedded
    rng = np.random.default_rng(4)
    queries = [(words(rng, 6), v) for v in clustered_vectors(cfg.num_queries, seed=1)]
    docs = documents(cfg)
    with tempfile.TemporaryDirectory(prefix="ragjet-shards-") as tmp:
        built = {n: build(Path(tmp), n, docs, embedder) for n in cfg.shard_counts}
        settings = RetrieveSettings()
        retrievers = {n: Retriever(collection, embedder, settings) for n, (collection, _) in built.items()}
        times, num_differing = measure(retrievers, queries)
    base = cfg.shard_counts[0]
    rows = []
    for n in cfg.shard_counts:
        case = f"{n} shard{'s' if n > 1 else ''}, {cfg.num_chunks:,} chunks"
        peer = f"{base} shard" if n != base else ""  # the base layout is the others' peer, not its own
        for q in (50, 99):
            rows.append(BenchRow(SUITE, case, f"p{q} search latency", percentile(times[n], q), "ms", peer,
                                 percentile(times[base], q) if peer else None, False,
                                 {"coarse_k": settings.coarse_k}))  # fmt: skip
        rows.append(BenchRow(SUITE, case, "build (write + save)", built[n][1], "s", peer,
                             built[base][1] if peer else None, False))  # fmt: skip
    notes = (
        f"Machine: {machine_description()}; torch {torch.get_num_threads()} threads. {cfg.num_chunks:,} chunks in "
        f"documents of {cfg.chunks_per_document}, unit {DIM}-d vectors from the search suite's clustered mixture, "
        f"texts of 20-60 Zipf-drawn words; flat index, hybrid retrieval (coarse_k {settings.coarse_k}, exact "
        f"rescoring, BM25, RRF), top-{K}, {cfg.num_queries} queries run on every layout in rotating order. Each "
        f"layout's search is one Retriever.search_vector call (query embedding excluded); a sharded one uses a thread "
        f"per shard. Top-{K} differed from the single shard's on {num_differing} of {cfg.num_queries} queries. "
        f"This host has {os.cpu_count()} logical CPUs: with more shards than that, the shard threads (and torch's "
        "own threads) take turns on them. Build: writing every document, one transaction each, and saving."
    )
    return rows, notes
