"""The two stages of a Ray Data ingest that run in Ray workers: load and chunk files, then embed their chunks.

A row is one file, never split, so the driver (rag/ray_ingest.py) gets each document whole and stores it in the
order the local ingest would:

    file        its position in the driver's file list
    status      STORE (new or changed: chunks to store), UNCHANGED (same bytes as stored) or ERROR
    error       the IngestError of an ERROR row, else None
    document    the Document without its sections (the store keeps chunks, not sections), None unless STORE
    chunks      list[Chunk], empty unless STORE
    vectors     (num_chunks, dim) float32, added by the embed stage

Both stages reuse the local path's pieces (load_document, Chunker, Embedder), so a Ray ingest stores the same
documents, chunks and (up to batching) vectors as `ingest_paths`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ragjet.embed.embedder import Embedder
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.errors import IngestError
from ragjet.ingest.loaders import load_document
from ragjet.rag.ingestion import chunks_to_store

STORE, UNCHANGED, ERROR = "store", "unchanged", "error"
Batch = dict[str, Any]  # Ray Data's "numpy" batch format: column name -> array (object arrays for objects)


def load_and_chunk(batch: Batch, chunker: Chunker, stored_hashes: Mapping[str, str]) -> Batch:
    """Rows of (file, path) to one row per file; `stored_hashes` (source -> sha256 in the collection) decides
    UNCHANGED before anything is embedded, as the local path skips a file whose bytes it already holds."""
    rows: dict[str, list[Any]] = {"file": [], "status": [], "error": [], "document": [], "chunks": []}
    for file, path in zip(batch["file"], batch["path"], strict=True):
        status, error, document, chunks = _load(str(path), chunker, stored_hashes)
        for column, value in zip(rows, (int(file), status, error, document, chunks), strict=True):
            rows[column].append(value)
    return rows


def _load(path: str, chunker: Chunker, stored_hashes: Mapping[str, str]) -> tuple[str, object, object, list]:
    try:
        doc = load_document(path)
        chunks = chunks_to_store(doc, chunker, stored_hashes.get(doc.source))
    except IngestError as exc:
        return ERROR, exc, None, []
    if chunks is None:
        return UNCHANGED, None, None, []
    return STORE, None, dataclasses.replace(doc, sections=()), chunks


class EmbedChunks:
    """A Ray Data actor: loads the embedder once, then embeds the chunks of every row in a batch with one call."""

    def __init__(self, load_embedder: Callable[[], Embedder]):
        self.embedder = load_embedder()

    def __call__(self, batch: Batch) -> Batch:
        counts = [len(chunks) for chunks in batch["chunks"]]
        vectors = self.embedder.embed([c.text for chunks in batch["chunks"] for c in chunks])  # (sum(counts), dim)
        offsets = np.cumsum([0, *counts])
        batch["vectors"] = [vectors[start:end] for start, end in zip(offsets[:-1], offsets[1:], strict=True)]
        return batch
