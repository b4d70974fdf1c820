"""Run by test_store_crash in a subprocess: ingest a folder, SIGKILL-ing itself at a chosen point.

Usage: python ingest_child.py ROOT DOCS KILL_POINT, where KILL_POINT is `put:N` (right after the N-th
document's transaction commits), `save` (half-way through writing the vector index file), `manifest`
(just before the manifest is renamed into place) or `none`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from ragjet import atomic
from ragjet.embed.embedder import Embedder
from ragjet.index import FlatIndex
from ragjet.ingest.chunker import Chunker
from ragjet.rag.ingestion import ingest_paths
from ragjet.store import Collection, chunk_store


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    if point.startswith("put:"):
        remaining = [int(point.removeprefix("put:"))]
        put = chunk_store.ChunkStore.put_document

        def put_then_maybe_die(self, *args):  # type: ignore[no-untyped-def]
            result = put(self, *args)
            remaining[0] -= 1
            if remaining[0] == 0:
                die()
            return result

        chunk_store.ChunkStore.put_document = put_then_maybe_die  # type: ignore[method-assign]
    elif point == "save":

        def half_written(self, path: Path) -> None:  # type: ignore[no-untyped-def]
            path.write_bytes(b"PK\x03\x04 half of an index")
            die()

        FlatIndex.save = half_written  # type: ignore[method-assign]
    elif point == "manifest":
        replace = os.replace

        def replace_unless_manifest(src, dst):  # type: ignore[no-untyped-def]
            if str(dst).endswith("manifest.json"):
                die()
            replace(src, dst)

        atomic.os.replace = replace_unless_manifest  # type: ignore[attr-defined]


def main() -> None:
    root, docs, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    embedder = Embedder.load("all-MiniLM-L6-v2", device="cpu")
    chunker = Chunker(embedder.tokenizer, max_tokens=64, overlap_tokens=8)
    collection = Collection.open(root, "facts")
    arm(point)
    ingest_paths(collection, [docs], embedder, chunker)


if __name__ == "__main__":
    main()
