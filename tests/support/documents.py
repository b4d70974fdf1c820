"""Synthetic documents with chunks and unit vectors, written straight into a collection (no embedder run).

Words follow a skewed distribution so BM25 sees common and rare terms, and every tenth document repeats an
earlier one's text and vectors: exact ties in both BM25 and cosine, which a merge must break the same way an
unsharded index does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragjet.index import IndexParams
from ragjet.ingest.document import Chunk, Document, Section, chunk_id
from ragjet.store import AnyCollection, ShardedCollection, open_collection

NUM_WORDS = 300


def words(rng: np.random.Generator, n: int) -> str:
    ranks = np.minimum(rng.zipf(1.3, size=n), NUM_WORDS) - 1
    return " ".join(f"w{r:03d}" for r in ranks)


def synthetic_documents(
    rng: np.random.Generator, num_documents: int, dim: int
) -> list[tuple[Document, list[Chunk], np.ndarray]]:
    """(document, its chunks, their vectors (num_chunks, dim) float32 unit rows) for each document."""
    out: list[tuple[Document, list[Chunk], np.ndarray]] = []
    for i in range(num_documents):
        source = f"synthetic/doc-{i:05d}.txt"
        if i % 10 == 9:
            texts, vectors = [c.text for c in out[i // 2][1]], out[i // 2][2]
        else:
            texts = [words(rng, int(rng.integers(5, 40))) for _ in range(int(rng.integers(1, 4)))]
            vectors = rng.standard_normal((len(texts), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunks = [Chunk(chunk_id(source, n, t), source, n, t, len(t.split())) for n, t in enumerate(texts)]
        digest = hashlib.sha256(" ".join(texts).encode()).hexdigest()
        out.append((Document(source, f"doc {i}", tuple(Section(t) for t in texts), digest), chunks, vectors))
    return out


def write_documents(collection: AnyCollection, documents: list[tuple[Document, list[Chunk], np.ndarray]]) -> None:
    with collection.writer():
        for doc, chunks, vectors in documents:
            collection.put_document(doc, chunks, vectors)


@dataclass(frozen=True)
class StubEmbedder:
    """What a retriever asks of an embedder when the queries come embedded (`search_vector`): its id and size."""

    model_id: str = "stub-embedder"
    dim: int = 32


def synthetic_sharded(root: Path, name: str, num_shards: int, num_documents: int, dim: int) -> AnyCollection:
    """A sharded collection of `num_documents` synthetic documents (seed 3), opened afresh for reading."""
    params = IndexParams(num_shards=num_shards)
    collection = ShardedCollection.create(root, name, StubEmbedder.model_id, dim, params, device="cpu")
    write_documents(collection, synthetic_documents(np.random.default_rng(3), num_documents, dim))
    return open_collection(root, name, "cpu")
