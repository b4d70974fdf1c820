"""Collections outlive settings: index parameters are stored as a versioned dict, every earlier layout opens, a
later one is refused clearly, and the index runs on the device of whoever opens the collection."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import IndexSettings, RetrieveSettings
from ragjet.index import FaissIndex, IndexParams
from ragjet.rag.ingestion import ingest_paths
from ragjet.retrieve import Retriever
from ragjet.store import Collection
from ragjet.store.manifest import checksum

# What ragjet wrote before layout 2: the index settings section dumped whole, device included.
LAYOUT_1_HNSW = {"kind": "hnsw", "nlist": 0, "nprobe": 16, "pq_m": 48, "hnsw_m": 16, "ef_search": 32,
                 "refine_factor": 4, "device": "cpu"}  # fmt: skip


def test_params_read_every_layout_and_refuse_a_later_one() -> None:
    params = IndexParams(kind="hnsw", hnsw_m=16, ef_search=32)
    assert IndexParams.from_dict(params.to_dict()) == params
    assert params.to_dict()["version"] == 3 and "device" not in params.to_dict()
    layout_2 = {key: value for key, value in params.to_dict().items() if key != "num_shards"} | {"version": 2}
    assert IndexParams.from_dict(layout_2) == params and params.num_shards == 1  # before shards: one
    assert IndexParams.from_dict(LAYOUT_1_HNSW) == params
    assert IndexParams.from_dict({"kind": "flat"}) == IndexParams()  # fields missing then take their defaults
    assert IndexParams.from_settings(IndexSettings(kind="hnsw", hnsw_m=16, ef_search=32, device="cpu")) == params
    with pytest.raises(ValueError, match="newer ragjet"):
        IndexParams.from_dict({**params.to_dict(), "version": 4})
    with pytest.raises(ValueError, match="unknown index kind 'annoy'"):
        IndexParams.from_dict({"kind": "annoy"})
    with pytest.raises(ValueError, match="num_shards must be between 1 and 64, got 0"):
        IndexParams(num_shards=0)


def write_layout_1(folder: Path) -> None:
    """Rewrite a collection's three records of its index parameters as the previous ragjet wrote them."""
    with sqlite3.connect(folder / "chunks.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'index'", (json.dumps(LAYOUT_1_HNSW),))
    vectors = folder / "vectors.index"
    with np.load(vectors) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["settings"] = LAYOUT_1_HNSW
    del meta["params"]
    arrays["meta"] = np.array(json.dumps(meta))
    with vectors.open("wb") as f:
        np.savez(f, **arrays)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["index"], manifest["checksums"]["vectors.index"] = LAYOUT_1_HNSW, checksum(vectors)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_collection_written_by_the_previous_layout_opens_as_it_was(root, docs, embedder, chunker, caplog) -> None:
    created = Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams(kind="hnsw", hnsw_m=16,
                                ef_search=32), device="cpu")  # fmt: skip
    ingest_paths(created, [docs], embedder, chunker)
    query = "Which volcano is on Sicily?"
    expected = [h.chunk_id for h in Retriever(Collection.open(root, "facts", "cpu"), embedder,
                                              RetrieveSettings()).search(query).hits]  # fmt: skip
    write_layout_1(root / "facts")

    reopened = Collection.open(root, "facts", device="cpu")
    assert reopened.index_params == IndexParams(kind="hnsw", hnsw_m=16, ef_search=32)
    assert isinstance(reopened.index, FaissIndex) and reopened.index.params == reopened.index_params
    assert "rebuilding" not in caplog.text  # the old index file itself loaded
    got = [h.chunk_id for h in Retriever(reopened, embedder, RetrieveSettings()).search(query).hits]
    assert got == expected

    with reopened.writer():
        pass  # a writer saves the derived files: in the current layout from then on
    manifest = json.loads((root / "facts" / "manifest.json").read_text())
    assert manifest["index"] == IndexParams(kind="hnsw", hnsw_m=16, ef_search=32).to_dict()


def test_the_index_runs_on_the_openers_device_not_the_creators(root, embedder) -> None:
    Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams(), device="cpu")
    assert str(Collection.open(root, "facts", device="cpu").index.device) == "cpu"  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="no CUDA device"):  # no GPU here: refused, not silently ignored
        Collection.open(root, "facts", device="cuda:1").index  # noqa: B018
