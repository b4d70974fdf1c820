"""Synthetic documents with chunks and unit vectors, written straight into a collection (no embedder run).

Words follow a skewed distribution so BM25 sees common and rare terms, and every tenth document repeats an
earlier one's text and vectors: exact ties in both BM25 and cosine, which a merge must break the same way an
unsharded index does.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ragjet.ingest.document import Chunk, Document, Section, chunk_id
from ragjet.store import AnyCollection

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
