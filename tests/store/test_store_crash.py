"""A real process SIGKILLed at several points of an ingest leaves a collection that opens consistent:
every document in its old or its new version, never a mix, and indexes that agree with the chunk store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import RetrieveSettings
from ragjet.index import IndexParams
from ragjet.rag.ingestion import ingest_paths
from ragjet.retrieve import Retriever
from ragjet.store import Collection
from ragjet.store.chunk_store import StoredChunk

CHILD = Path(__file__).with_name("ingest_child.py")
NUM_DOCS = 12


def write_docs(folder: Path, version: str) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(NUM_DOCS):
        body = "\n\n".join(f"Note {i}.{p} of version {version}: harbour {i} keeps lamp {p} lit." for p in range(6))
        (folder / f"note{i:02d}.md").write_text(f"# Note {i}\n\n{body}\n")


@pytest.mark.parametrize("kill_point", ["put:1", "put:7", "save", "manifest"])
def test_killed_ingest_leaves_each_document_old_or_new(root, tmp_path, embedder, chunker, kill_point) -> None:
    docs = tmp_path / "notes"
    write_docs(docs, "old")
    ingest_paths(
        Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams(kind="flat")),
        [docs],
        embedder,
        chunker,
    )
    write_docs(docs, "new")

    child = subprocess.run([sys.executable, str(CHILD), str(root), str(docs), kill_point], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()[-2000:]

    collection = Collection.open(root, "facts")
    versions = {}
    for doc in collection.documents():
        chunks = [c for c in _all_chunks(collection) if c.source == doc.source]
        kinds = {"new" if "version new" in c.text else "old" for c in chunks}
        assert len(kinds) == 1 and len(chunks) == doc.num_chunks, (doc.source, kinds)
        versions[doc.source] = kinds.pop()
    assert len(versions) == NUM_DOCS
    if kill_point.startswith("put:"):
        assert list(versions.values()).count("new") == int(kill_point.removeprefix("put:"))
    else:  # killed while saving: every transaction had committed
        assert set(versions.values()) == {"new"}
    assert len(collection.index) == collection.info().num_chunks  # rebuilt to match the chunk store
    hits = Retriever(collection, embedder, RetrieveSettings()).search("harbour 3 lamp", top_k=3).hits
    assert hits and all("version" in h.text for h in hits)

    finish = ingest_paths(collection, [docs], embedder, chunker)  # a rerun completes the interrupted work
    assert finish.num_added == 0 and finish.num_updated + finish.num_unchanged == NUM_DOCS
    assert {"new"} == {
        ("new" if "version new" in c.text else "old") for c in _all_chunks(Collection.open(root, "facts"))
    }


def _all_chunks(collection: Collection) -> list[StoredChunk]:
    return collection.store.chunks(np.concatenate([ids for ids, _, _ in collection.store.iter_chunks()]))
