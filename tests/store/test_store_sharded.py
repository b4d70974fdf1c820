"""Sharded collections on disk: routing by a stable hash, collection-wide chunk ids, writes that touch one shard,
refused writes while a shard is lost, and plain collections (the layout before shards) left as they were."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import IndexSettings, Settings
from ragjet.index import IndexParams
from ragjet.rag.collections import CollectionRegistry
from ragjet.store import (
    Collection,
    CollectionError,
    ShardedCollection,
    create_collection,
    delete_collection,
    list_collections,
    open_collection,
    repair_collection,
)
from ragjet.store.sharded import shard_of
from support.documents import synthetic_documents, write_documents

DIM = 16


@pytest.fixture
def documents():
    return synthetic_documents(np.random.default_rng(5), 60, DIM)


def chunk_ids(collection: Collection) -> dict[str, int]:
    with sqlite3.connect(collection.folder / "chunks.db") as conn:
        return dict(conn.execute("SELECT chunk_id, id FROM chunks"))


def test_shard_of_is_stable_and_spreads() -> None:
    # pinned: a stored document must map to the same shard in every process, Python version and ragjet release
    assert [shard_of(f"doc-{i}", 4) for i in range(6)] == [0, 1, 2, 2, 3, 3] and shard_of("docs/a.md", 4) == 2
    counts = np.bincount([shard_of(f"doc-{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 900


def test_documents_land_in_their_shard_with_the_ids_an_unsharded_collection_gives(root: Path, documents) -> None:
    sharded = create_collection(root, "sharded", "e", DIM, IndexParams(num_shards=3))
    plain = create_collection(root, "plain", "e", DIM, IndexParams())
    assert isinstance(sharded, ShardedCollection) and isinstance(plain, Collection)
    assert (root / "plain" / "chunks.db").is_file() and not (root / "sharded" / "chunks.db").exists()
    write_documents(sharded, documents)
    write_documents(plain, documents)
    merged: dict[str, int] = {}
    for number, shard in sharded.shards.items():
        assert shard.documents() and all(shard_of(d.source, 3) == number for d in shard.documents())
        merged |= chunk_ids(shard)
    assert merged == chunk_ids(plain)
    info = sharded.info()
    assert (info.num_documents, info.num_chunks) == (60, plain.info().num_chunks)
    assert [d.source for d in sharded.documents()] == [d.source for d in plain.documents()]


def test_delete_and_reingest_touch_only_the_documents_shard(root: Path, documents) -> None:
    sharded = create_collection(root, "sharded", "e", DIM, IndexParams(num_shards=3))
    write_documents(sharded, documents)
    doc, chunks, vectors = documents[7]
    home = shard_of(doc.source, 3)
    before = {n: s.documents() for n, s in sharded.shards.items()}
    versions = {n: Collection.version_of(sharded.folder, f"shard-{n}") for n in range(3)}
    assert sharded.delete_document(doc.source) and not sharded.delete_document(doc.source)
    assert sharded.content_hash(doc.source) is None
    changed = {n for n in range(3) if Collection.version_of(sharded.folder, f"shard-{n}") != versions[n]}
    assert changed == {home}
    write_documents(sharded, [(doc, chunks, vectors)])
    last_id = max(chunk_ids(s)[c.id] for s in sharded.shards.values() for c in chunks if c.id in chunk_ids(s))
    assert last_id > max(max(chunk_ids(s).values()) for n, s in sharded.shards.items() if n != home)
    after = {n: s.documents() for n, s in sharded.shards.items()}
    for n in range(3):
        same = [(d.source, d.content_hash) for d in after[n]] == [(d.source, d.content_hash) for d in before[n]]
        assert same
    assert sharded.content_hash(doc.source) == doc.content_hash


def test_a_lost_shard_refuses_writes_and_leaves_the_others_intact(root: Path, documents) -> None:
    write_documents(create_collection(root, "sharded", "e", DIM, IndexParams(num_shards=3)), documents)
    (root / "sharded" / "shard-2" / "chunks.db").unlink()
    collection = open_collection(root, "sharded")
    assert isinstance(collection, ShardedCollection) and set(collection.problems) == {2}
    before = [s.documents() for s in collection.shards.values()]
    with pytest.raises(CollectionError, match="not written while a shard is unreadable: shard-2 of 'sharded'"):
        write_documents(collection, documents[:1])
    with pytest.raises(CollectionError, match="shard is unreadable"):
        collection.delete_document(documents[0][0].source)
    with pytest.raises(CollectionError, match="shard-2 of 'sharded' has lost its chunk store.*backup"):
        repair_collection(root, "sharded")
    assert [s.documents() for s in open_collection(root, "sharded").shards.values()] == before  # type: ignore[union-attr]


def test_listing_deleting_and_the_registry_know_sharded_collections(root: Path, documents, embedder) -> None:
    write_documents(create_collection(root, "sharded", "e", DIM, IndexParams(num_shards=2)), documents)
    create_collection(root, "plain", "e", DIM, IndexParams())
    assert [(i.name, i.num_documents) for i in list_collections(root)] == [("plain", 0), ("sharded", 60)]
    delete_collection(root, "sharded")
    assert [i.name for i in list_collections(root)] == ["plain"] and not (root / "sharded").exists()
    registry = CollectionRegistry(Settings(index=IndexSettings(num_shards=4, device="cpu")), root)
    registry.embedder = embedder
    assert registry.create("wide").num_documents == 0
    assert json.loads((root / "wide" / "shards.json").read_text())["num_shards"] == 4
    assert registry.retriever("wide").collection.index_params.num_shards == 4
    with pytest.raises(ValueError, match="num_shards"):
        IndexSettings(num_shards=0)


def test_a_collection_from_before_shards_opens_and_searches_as_before(root: Path, documents) -> None:
    """Layout-2 index params (no num_shards) in an existing plain collection: it opens as one shard."""
    plain = create_collection(root, "old", "e", DIM, IndexParams())
    write_documents(plain, documents)
    layout_2 = {key: v for key, v in IndexParams().to_dict().items() if key != "num_shards"} | {"version": 2}
    with sqlite3.connect(root / "old" / "chunks.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'index'", (json.dumps(layout_2),))
    reopened = open_collection(root, "old")
    assert isinstance(reopened, Collection) and reopened.index_params.num_shards == 1
    assert reopened.shards == {0: reopened} and reopened.problems == {}
    _, ids = reopened.index.search(documents[3][2][:1], 1)
    assert ids[0][0] == chunk_ids(reopened)[documents[3][1][0].id]
