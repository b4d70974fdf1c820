"""Collections on real SQLite files with the real embedder: create, reopen, update, delete, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.rag.ingestion import ingest_paths
from ragjet.retrieve import Retriever
from ragjet.store import (
    Collection,
    CollectionError,
    CollectionNotFoundError,
    EmbedderMismatchError,
    delete_collection,
    list_collections,
)


def texts(collection: Collection) -> dict[str, list[str]]:
    ids = np.concatenate([ids for ids, _, _ in collection.store.iter_chunks()] or [np.empty(0, np.int64)])
    by_source: dict[str, list[str]] = {}
    for chunk in collection.store.chunks(ids):
        by_source.setdefault(Path(chunk.source).name, []).append(chunk.text)
    return by_source


def top_source(collection: Collection, embedder: Embedder, query: str) -> str:
    hits = Retriever(collection, embedder, RetrieveSettings()).search(query, top_k=1).hits
    return Path(hits[0].source).name


def test_ingest_reopen_and_reingest_is_idempotent(collection, root, docs, embedder, chunker) -> None:
    report = ingest_paths(collection, [docs], embedder, chunker)
    assert (report.num_added, report.num_updated, report.num_skipped) == (3, 0, 0)
    assert report.num_chunks == collection.info().num_chunks > 3

    reopened = Collection.open(root, "facts")
    assert reopened.info().num_documents == 3 and len(reopened.index) == report.num_chunks
    assert top_source(reopened, embedder, "Who designed the Fresnel lens?") == "lighthouse.md"
    before = texts(reopened)

    again = ingest_paths(reopened, [docs], embedder, chunker)
    assert (again.num_added, again.num_updated, again.num_unchanged, again.num_chunks) == (0, 0, 3, 0)
    assert texts(Collection.open(root, "facts")) == before


def test_a_changed_file_replaces_its_chunks_and_delete_removes_them(collection, root, docs, embedder, chunker) -> None:
    ingest_paths(collection, [docs], embedder, chunker)
    (docs / "bread.md").write_text("# Rye\n\nPumpernickel is a dense rye bread from Westphalia baked for a day.\n")
    report = ingest_paths(Collection.open(root, "facts"), [docs], embedder, chunker)
    assert (report.num_added, report.num_updated, report.num_unchanged) == (0, 1, 2)

    reopened = Collection.open(root, "facts")
    assert not any("Sourdough" in t for t in texts(reopened)["bread.md"])
    assert top_source(reopened, embedder, "Which rye bread comes from Westphalia?") == "bread.md"

    assert reopened.delete_document(str(docs / "bread.md")) is True
    assert reopened.delete_document(str(docs / "bread.md")) is False
    after = Collection.open(root, "facts")
    assert "bread.md" not in texts(after) and after.info().num_documents == 2
    assert len(after.index) == after.info().num_chunks


def test_create_open_list_and_delete(root, embedder) -> None:
    Collection.create(root, "a", embedder.model_id, embedder.dim, IndexParams())
    Collection.create(root, "b", embedder.model_id, embedder.dim, IndexParams(kind="hnsw"))
    assert [(c.name, c.index_kind, c.num_chunks) for c in list_collections(root)] == [
        ("a", "flat", 0),
        ("b", "hnsw", 0),
    ]
    with pytest.raises(CollectionError, match="already exists"):
        Collection.create(root, "a", embedder.model_id, embedder.dim, IndexParams())
    with pytest.raises(CollectionError, match="invalid collection name"):
        Collection.create(root, "../escape", embedder.model_id, embedder.dim, IndexParams())
    delete_collection(root, "a")
    with pytest.raises(CollectionNotFoundError, match="'a'"):
        Collection.open(root, "a")
    with pytest.raises(CollectionNotFoundError):
        delete_collection(root, "a")
    assert [c.name for c in list_collections(root)] == ["b"]


def test_an_embedder_mismatch_is_refused_before_anything_is_written(root, docs, embedder, chunker) -> None:
    other = Collection.create(root, "other", "some-other-model:abc", 768, IndexParams())
    with pytest.raises(EmbedderMismatchError, match="some-other-model:abc.*all_minilm"):
        ingest_paths(other, [docs], embedder, chunker)
    assert Collection.open(root, "other").info().num_documents == 0


def test_bad_files_are_reported_by_path_and_the_good_ones_stored(collection, root, docs, embedder, chunker) -> None:
    ingest_paths(collection, [docs], embedder, chunker)
    before = texts(Collection.open(root, "facts"))
    (docs / "empty.txt").write_text("")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me served at the harbour.".encode("latin-1"))
    report = ingest_paths(Collection.open(root, "facts"), [docs, docs / "missing.md"], embedder, chunker)
    reasons = "\n".join(report.errors)
    assert report.num_skipped == 4, reasons
    for name in ("empty.txt", "binary.txt", "broken.pdf", "missing.md"):
        assert name in reasons
    assert report.num_added == 1 and report.num_unchanged == 3  # latin-1 text is decoded, not refused
    after = texts(Collection.open(root, "facts"))
    assert {k: v for k, v in after.items() if k != "latin1.txt"} == before


def test_a_damaged_manifest_is_refused_with_the_repair_command(collection, root, docs, embedder, chunker) -> None:
    ingest_paths(collection, [docs], embedder, chunker)
    (root / "facts" / "manifest.json").write_text("{ truncated")
    with pytest.raises(CollectionError, match=r"manifest.json is damaged.*ragjet collections repair facts"):
        Collection.open(root, "facts")
    info = Collection.repair(root, "facts")
    assert info.num_documents == 3
    assert top_source(Collection.open(root, "facts"), embedder, "How does sourdough rise?") == "bread.md"


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_index_file_is_rebuilt_from_the_chunk_store(
    collection, root, docs, embedder, chunker, damage, caplog
):
    ingest_paths(collection, [docs], embedder, chunker)
    query = "Which volcano is on Sicily?"
    expected = [
        h.chunk_id for h in Retriever(Collection.open(root, "facts"), embedder, RetrieveSettings()).search(query).hits
    ]
    path = root / "facts" / "vectors.index"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-9] + bytes([data[-9] ^ 0xFF]) + data[-8:])
    else:
        path.unlink()
    reopened = Collection.open(root, "facts")
    got = [h.chunk_id for h in Retriever(reopened, embedder, RetrieveSettings()).search(query).hits]
    assert got == expected
    assert "rebuilding them from the chunk store" in caplog.text
    manifest = json.loads((root / "facts" / "manifest.json").read_text())
    assert path.exists() and len(path.read_bytes()) == len(data) and manifest["generation"] >= 1
    caplog.clear()
    Collection.open(root, "facts").index  # noqa: B018 - the repaired files load without another rebuild
    assert "rebuilding" not in caplog.text


def test_a_damaged_chunk_store_is_a_clear_error(collection, root) -> None:
    (root / "facts" / "chunks.db").write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        (root / "facts" / f"chunks.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(CollectionError, match="chunks.db"):
        Collection.open(root, "facts")
