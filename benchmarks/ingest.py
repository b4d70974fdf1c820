"""Ingestion benchmark: the demo corpus (Python language reference) loaded, chunked, embedded and stored."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.report import BenchRow, machine_description
from ragjet.config import ChunkSettings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.demo import write_demo_corpus
from ragjet.rag.ingestion import ingest_paths
from ragjet.store import Collection

TITLE = "Ingestion (demo corpus, end to end)"


def run(quick: bool) -> tuple[list[BenchRow], str]:
    embedder = Embedder.load("all-MiniLM-L6-v2", device="auto")
    chunk = ChunkSettings()
    chunker = Chunker.from_settings(embedder.tokenizer, chunk)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_demo_corpus(Path(tmp) / "corpus")[: 10 if quick else None]
        root = Path(tmp) / "collections"
        collection = Collection.create(root, "demo", embedder.model_id, embedder.dim, IndexParams(), device="cpu")
        first = ingest_paths(collection, paths, embedder, chunker)
        again = ingest_paths(Collection.open(root, "demo"), paths, embedder, chunker)
    case = f"{len(paths)} documents, {first.num_chunks} chunks of <= {chunk.max_tokens} tokens"
    rows = [
        BenchRow("ingest", case, "documents", first.num_added / first.seconds, "docs/s"),
        BenchRow("ingest", case, "chunks", first.num_chunks / first.seconds, "chunks/s"),
        BenchRow("ingest", f"re-ingest of the same {len(paths)} unchanged files", "documents",
                 again.num_unchanged / again.seconds, "docs/s"),
    ]  # fmt: skip
    notes = (
        f"Machine: {machine_description()}; torch {torch.get_num_threads()} threads; embedder "
        f"{embedder.model_id} ({embedder.precision}, CPU). End to end: load markdown, chunk (overlap "
        f"{chunk.overlap_tokens} tokens), embed, one SQLite transaction per document, flat index + BM25 + "
        f"manifest saved with checksums. First run {first.seconds:.1f} s; the re-ingest found all "
        f"{again.num_unchanged} files unchanged by content hash and wrote nothing."
    )
    return rows, notes
