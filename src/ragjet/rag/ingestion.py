"""Ingest files into a collection: load, chunk, embed in large batches, store one document per transaction.

Idempotent: a file whose bytes are unchanged (same sha256) is skipped, a changed one replaces its old
chunks, so ingesting the same folder twice leaves the same state. Bad files are reported by path and
skipped (or stop the run with on_error="raise"); documents stored before a failure stay stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.progress import Progress

from ragjet.embed.embedder import Embedder
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.document import Chunk, Document
from ragjet.ingest.errors import IngestError
from ragjet.ingest.loaders import iter_files, load_documents
from ragjet.store import AnyCollection

EMBED_BATCH_CHUNKS = 512  # chunks of several small documents are embedded together: far fewer, fuller batches


@dataclass(frozen=True, slots=True)
class IngestReport:
    num_added: int
    num_updated: int
    num_unchanged: int
    num_skipped: int
    num_chunks: int  # chunks written by this run
    errors: list[str] = field(default_factory=list)  # one "path: reason" per skipped file
    seconds: float = 0.0


@dataclass
class Tally:
    """What a run has done so far; the local and the Ray Data ingest (rag/ray_ingest.py) count alike."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    errors: list[str] = field(default_factory=list)

    def report(self, started: float) -> IngestReport:
        return IngestReport(self.added, self.updated, self.unchanged, len(self.errors), self.chunks, self.errors,
                            time.perf_counter() - started)  # fmt: skip


def ingest_paths(
    collection: AnyCollection,
    paths: list[Path],
    embedder: Embedder,
    chunker: Chunker,
    *,
    on_error: Literal["raise", "skip"] = "skip",
    progress: bool = False,
) -> IngestReport:
    """Ingest files and folders into `collection`.

    Raises:
        EmbedderMismatchError: the collection was built with another embedder (nothing is written).
        IngestError: with on_error="raise", the first bad file (documents before it stay stored).
    """
    started = time.perf_counter()
    collection.check_embedder(embedder.model_id, embedder.dim)
    tally = Tally()
    pending: Pending = []

    def skip(error: IngestError) -> None:
        tally.errors.append(str(error))

    with collection.writer(), Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("ingesting", total=_count_files(paths))
        for doc in load_documents(paths, on_error=on_error, on_skip=skip):
            bar.advance(task)
            try:
                chunks = chunks_to_store(doc, chunker, collection.content_hash(doc.source))
            except IngestError as exc:
                skip(exc)
                continue
            if chunks is None:
                tally.unchanged += 1
                continue
            pending.append((doc, chunks))
            if sum(len(c) for _, c in pending) >= EMBED_BATCH_CHUNKS:
                _store(collection, embedder, pending, tally)
        _store(collection, embedder, pending, tally)
        bar.update(task, completed=bar.tasks[0].total)
    return tally.report(started)


Pending = list[tuple[Document, list[Chunk]]]


def chunks_to_store(doc: Document, chunker: Chunker, stored_hash: str | None) -> list[Chunk] | None:
    """`doc`'s chunks, or None when its bytes are the ones stored (`stored_hash`): nothing to embed or write.
    IngestError when it yields no chunk. The local and the Ray Data ingest (rag/ray_stages.py) both decide here."""
    if stored_hash == doc.content_hash:
        return None
    chunks = chunker.split(doc)
    if not chunks:
        raise IngestError(doc.source, "produced no chunks")
    return chunks


def _store(collection: AnyCollection, embedder: Embedder, pending: Pending, tally: Tally) -> None:
    """Embed every pending chunk in one call, then write each document in its own transaction."""
    if not pending:
        return
    vectors = embedder.embed([c.text for _, chunks in pending for c in chunks])
    offsets = np.cumsum([0, *(len(chunks) for _, chunks in pending)])
    for (doc, chunks), start, end in zip(pending, offsets[:-1], offsets[1:], strict=True):
        store_document(collection, doc, chunks, vectors[start:end], tally)
    pending.clear()


def store_document(collection: AnyCollection, doc: Document, chunks: list[Chunk], vectors: np.ndarray,
                   tally: Tally) -> None:  # fmt: skip
    """Put one document in its own transaction (a crash keeps every document stored before it) and count it."""
    is_update = collection.content_hash(doc.source) is not None
    collection.put_document(doc, chunks, vectors)
    tally.updated += is_update
    tally.added += not is_update
    tally.chunks += len(chunks)


def _count_files(paths: list[Path]) -> int | None:
    """For the progress bar only: a path that cannot be walked is reported later, by load_documents."""
    total = 0
    for path in paths:
        try:
            total += sum(1 for _ in iter_files([path]))
        except IngestError:
            continue
    return total
