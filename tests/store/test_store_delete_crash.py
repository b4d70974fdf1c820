"""Real processes SIGKILLed at several points of document deletes and of a collection delete. Reopened, the
store is consistent: each document fully present or fully gone, indexes holding exactly the chunk store's
chunks, and a rerun (or a new collection of the same name) finishes the job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragjet.index import IndexParams
from ragjet.rag.ingestion import ingest_paths
from ragjet.store import Collection, CollectionNotFoundError, delete_collection, list_collections

CHILD = Path(__file__).with_name("delete_child.py")
NUM_DOCS = 6
DELETED = 3  # the child deletes the first three documents, one writer each


@pytest.fixture
def facts(root: Path, tmp_path: Path, embedder, chunker) -> list[str]:  # type: ignore[no-untyped-def]
    """A collection of NUM_DOCS documents; returns their sources, sorted."""
    docs = tmp_path / "notes"
    docs.mkdir()
    for i in range(NUM_DOCS):
        body = "\n\n".join(f"Note {i}.{p}: harbour {i} keeps lamp {p} lit all night." for p in range(4))
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\n{body}\n")
    collection = Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams(kind="flat"))
    ingest_paths(collection, [docs], embedder, chunker)
    return [d.source for d in collection.documents()]


def run_child(root: Path, point: str, *sources: str) -> None:
    child = subprocess.run([sys.executable, str(CHILD), str(root), point, *sources], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()[-2000:]


def assert_consistent(collection: Collection, sources: list[str]) -> set[str]:
    """Each document whole or gone, both indexes exactly the stored chunks; returns the sources present."""
    stored = {d.source: d.num_chunks for d in collection.documents()}
    ids = np.concatenate([i for i, _, _ in collection.store.iter_chunks()])
    chunks = collection.store.chunks(ids)
    for source in sources:
        assert sum(c.source == source for c in chunks) == stored.get(source, 0), source
    assert len(collection.index) == len(collection.bm25) == len(ids)
    _, found = collection.index.search(np.zeros((1, collection.dim), np.float32), len(ids) + 5)
    assert set(found[0][found[0] >= 0].tolist()) == set(ids.tolist())
    _, keyword = collection.bm25.search("harbour", len(ids) + 5)
    assert set(keyword[keyword >= 0].tolist()) == set(ids.tolist())
    return set(stored)


@pytest.mark.parametrize(
    ("point", "num_gone"), [("inside:2", 1), ("commit:1", 1), ("commit:3", 3), ("save:2", 2), ("manifest:3", 3)]
)
def test_killed_document_deletes_leave_each_document_whole_or_gone(root, facts, point, num_gone) -> None:  # type: ignore[no-untyped-def]
    targets = facts[:DELETED]
    run_child(root, point, *targets)

    present = assert_consistent(Collection.open(root, "facts"), facts)
    assert present == set(facts[num_gone:])  # deletes commit in order: the first num_gone went through

    for source in targets:  # the rerun finishes the interrupted work
        Collection.open(root, "facts").delete_document(source)
    assert assert_consistent(Collection.open(root, "facts"), facts) == set(facts[DELETED:])


def test_killed_before_the_rename_keeps_the_collection(root, facts) -> None:  # type: ignore[no-untyped-def]
    run_child(root, "rename")
    assert assert_consistent(Collection.open(root, "facts"), facts) == set(facts)
    assert [c.name for c in list_collections(root)] == ["facts"]


@pytest.mark.parametrize("point", ["renamed", "rmtree"])
def test_killed_collection_delete_leaves_it_gone(root, facts, embedder, point) -> None:  # type: ignore[no-untyped-def]
    run_child(root, point)
    assert any(p.name.startswith(".facts.deleting.") for p in root.iterdir())  # the dead child's trash

    assert list_collections(root) == []  # listing sweeps the trash of deletes that died
    assert [p.name for p in root.iterdir()] == []
    with pytest.raises(CollectionNotFoundError):
        Collection.open(root, "facts")
    with pytest.raises(CollectionNotFoundError):
        delete_collection(root, "facts")
    fresh = Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams(kind="flat"))
    assert fresh.info().num_documents == 0 and len(fresh.index) == 0
