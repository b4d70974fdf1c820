"""Sharded retrieval against its slow reference, the unsharded collection: the same hits with the same scores.

Both are filled in the same order, so chunk ids agree; the sharded one searches its shards in parallel, merges
their candidate lists and fuses with collection-wide BM25 statistics. Damaged shards leave the others answering.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.eval.datasets import load_dataset, write_corpus_files
from ragjet.index import IndexParams
from ragjet.index.bm25 import BM25Stats
from ragjet.ingest.chunker import Chunker
from ragjet.rag.ingestion import ingest_paths
from ragjet.retrieve import Retriever, SearchResult
from ragjet.retrieve.shards import merge, shard_candidates
from ragjet.store import AnyCollection, Collection, CollectionError, ShardedCollection, open_collection
from ragjet.store.sharded import shard_of
from support.documents import synthetic_documents, words, write_documents

SHARD_COUNTS = (1, 2, 3)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load("all-MiniLM-L6-v2", device="cpu")


def create(root: Path, name: str, embedder: Embedder, num_shards: int | None) -> AnyCollection:
    """num_shards None: today's plain collection; a number: the sharded layout, even for one shard."""
    if num_shards is None:
        return Collection.create(root, name, embedder.model_id, embedder.dim, IndexParams(), device="cpu")
    params = IndexParams(num_shards=num_shards)
    return ShardedCollection.create(root, name, embedder.model_id, embedder.dim, params, device="cpu")


def assert_same(result: SearchResult, reference: SearchResult) -> None:
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in reference.hits]
    for hit, expected in zip(result.hits, reference.hits, strict=True):
        assert hit.score == pytest.approx(expected.score, abs=1e-6)
        assert hit.dense_score == pytest.approx(expected.dense_score, abs=1e-6)
        assert (hit.bm25_score is None) == (expected.bm25_score is None)
        assert hit.bm25_score == pytest.approx(expected.bm25_score, abs=1e-6)
        assert (hit.rank, hit.source, hit.text) == (expected.rank, expected.source, expected.text)
    assert result.fallback is None and reference.fallback is None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, embedder: Embedder) -> dict[int | None, AnyCollection]:
    root = tmp_path_factory.mktemp("synthetic")
    documents = synthetic_documents(np.random.default_rng(3), 400, embedder.dim)
    collections = {n: create(root, f"n{n}", embedder, n) for n in (None, *SHARD_COUNTS)}
    for collection in collections.values():
        write_documents(collection, documents)
    return {n: open_collection(root, f"n{n}", "cpu") for n in collections}


@pytest.mark.parametrize("num_shards", SHARD_COUNTS)
@pytest.mark.parametrize("coarse_k", [100, 12])
def test_synthetic_corpus_ranks_as_unsharded(synthetic, embedder, num_shards: int, coarse_k: int) -> None:
    settings = RetrieveSettings(coarse_k=coarse_k)
    reference, sharded = Retriever(synthetic[None], embedder, settings), Retriever(synthetic[num_shards], embedder,
                                                                                     settings)  # fmt: skip
    rng = np.random.default_rng(11)
    documents = synthetic_documents(np.random.default_rng(3), 400, embedder.dim)
    vectors = [rng.standard_normal(embedder.dim).astype(np.float32) for _ in range(20)]
    vectors += [documents[i][2][0] for i in (4, 9, 19)]  # a stored vector (and its duplicate) as the query
    for vector in vectors:
        query = words(rng, 4)
        vector /= np.linalg.norm(vector)
        expected = reference.search_vector(query, vector, 10)
        assert_same(sharded.search_vector(query, vector, 10), expected)
    assert len({h.source for h in expected.hits}) > 1


def test_the_shards_really_split_the_corpus(synthetic) -> None:
    collection = synthetic[3]
    assert isinstance(collection, ShardedCollection) and not collection.problems
    counts = [shard.info().num_documents for shard in collection.shards.values()]
    assert sum(counts) == 400 and min(counts) > 80
    for number, shard in collection.shards.items():
        assert all(shard_of(d.source, 3) == number for d in shard.documents())


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory, embedder: Embedder) -> dict[str, dict[int | None, AnyCollection]]:
    """The shipped eval sets, ingested the way `ragjet eval` ingests them, unsharded and with 1-3 shards."""
    root, out = tmp_path_factory.mktemp("eval"), {}
    chunker = Chunker(embedder.tokenizer, max_tokens=48, overlap_tokens=8)
    for name in ("python-beir", "python-squad"):
        files = root / f"{name}-files"
        write_corpus_files(load_dataset(name), files)
        out[name] = {}
        for n in (None, *SHARD_COUNTS):
            created = create(root, f"{name}-{n}", embedder, n)
            ingest_paths(created, sorted(files.iterdir()), embedder, chunker)
            out[name][n] = open_collection(root, f"{name}-{n}", "cpu")
    return out


@pytest.mark.parametrize("name", ["python-beir", "python-squad"])
@pytest.mark.parametrize("coarse_k", [100, 6])
def test_shipped_eval_sets_rank_as_unsharded(eval_sets, embedder, name: str, coarse_k: int) -> None:
    settings = RetrieveSettings(coarse_k=coarse_k)
    queries = load_dataset(name).queries
    vectors = embedder.embed([q.text for q in queries])
    reference = Retriever(eval_sets[name][None], embedder, settings)
    for n in SHARD_COUNTS:
        sharded = Retriever(eval_sets[name][n], embedder, settings)
        for query, vector in zip(queries, vectors, strict=True):
            assert_same(sharded.search_vector(query.text, vector, 5), reference.search_vector(query.text, vector, 5))


def test_filters_and_no_bm25_match_too(eval_sets, embedder) -> None:
    collections = eval_sets["python-beir"]
    source = collections[None].documents()[3].source
    for settings, filters in ((RetrieveSettings(use_bm25=False), None), (RetrieveSettings(), {"source": source})):
        reference = Retriever(collections[None], embedder, settings).search("immutable sequence", 4, filters)
        assert_same(Retriever(collections[3], embedder, settings).search("immutable sequence", 4, filters), reference)
        assert reference.hits and (filters is None or {h.source for h in reference.hits} == {source})
    with pytest.raises(ValueError, match="unknown filter 'colour'"):
        Retriever(collections[3], embedder, RetrieveSettings()).search("tuple", 3, {"colour": "red"})


def test_shards_opened_on_their_own_merge_to_the_same_candidates(synthetic, embedder) -> None:
    """What a Ray replica per shard would do: open its shard folder alone, answer with plain arrays."""
    folder = synthetic[3].folder
    alone = [Collection.open(folder, f"shard-{n}", "cpu") for n in range(3)]
    query, vector = "w001 w007 w042", synthetic_documents(np.random.default_rng(3), 20, embedder.dim)[7][2][0]
    stats = BM25Stats.merged([shard.bm25.stats(query) for shard in alone])
    args = {"query": query, "vector": vector, "coarse_k": 30, "use_bm25": True}
    parts = [shard_candidates(n, shard, **args, stats=stats) for n, shard in enumerate(alone)]
    whole = shard_candidates(0, synthetic[None], **args, stats=synthetic[None].bm25.stats(query))
    merged, expected = merge(parts, 30), merge([whole], 30)
    np.testing.assert_array_equal(merged.dense_ids, expected.dense_ids)
    np.testing.assert_array_equal(merged.bm25_ids, expected.bm25_ids)
    np.testing.assert_array_equal(merged.bm25_scores, expected.bm25_scores)
    assert {n for n in merged.owner.values()} == {0, 1, 2}


@pytest.fixture
def damaged_copy(synthetic, tmp_path: Path) -> Path:
    """A copy of the 3-shard synthetic collection, to damage (its root is returned; the collection is 'n3')."""
    shutil.copytree(synthetic[3].folder, tmp_path / "n3", ignore=shutil.ignore_patterns("write.lock"))
    return tmp_path


def damage(shard: Path, how: str) -> None:
    if how == "deleted":
        for name in ("chunks.db", "chunks.db-wal", "chunks.db-shm"):
            (shard / name).unlink(missing_ok=True)
    else:
        data = (shard / "chunks.db").read_bytes()
        (shard / "chunks.db").write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_damaged_shard_degrades_the_result_and_names_it(damaged_copy, synthetic, embedder, how: str) -> None:
    damage(damaged_copy / "n3" / "shard-1", how)
    collection = open_collection(damaged_copy, "n3", "cpu")
    query, vector = "w002 w011", synthetic_documents(np.random.default_rng(3), 9, embedder.dim)[8][2][0]
    result = Retriever(collection, embedder, RetrieveSettings()).search_vector(query, vector, 10)
    assert result.fallback is not None and "shard-1" in result.fallback and "not searched" in result.fallback
    assert result.hits and all(shard_of(h.source, 3) != 1 for h in result.hits)
    # what the healthy shards hold, as one unsharded collection (ids keep their order, so ties break alike)
    survivors = [
        d for d in synthetic_documents(np.random.default_rng(3), 400, embedder.dim) if shard_of(d[0].source, 3) != 1
    ]
    reference = create(damaged_copy, "survivors", embedder, None)
    write_documents(reference, survivors)
    expected = Retriever(reference, embedder, RetrieveSettings()).search_vector(query, vector, 10)
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in expected.hits]
    assert [h.score for h in result.hits] == pytest.approx([h.score for h in expected.hits], abs=1e-6)
    for number in (0, 2):  # the good shards still hold every document they held
        shard = Collection.open(damaged_copy / "n3", f"shard-{number}", "cpu")
        assert shard.documents() == synthetic[3].shards[number].documents()


def test_a_damaged_derived_file_is_rebuilt_not_degraded(damaged_copy, synthetic, embedder) -> None:
    vectors = damaged_copy / "n3" / "shard-2" / "vectors.index"
    vectors.write_bytes(vectors.read_bytes()[:100])
    retriever = Retriever(open_collection(damaged_copy, "n3", "cpu"), embedder, RetrieveSettings())
    reference = Retriever(synthetic[None], embedder, RetrieveSettings())
    vector = synthetic_documents(np.random.default_rng(3), 5, embedder.dim)[4][2][0]
    assert_same(retriever.search_vector("w003 w005", vector, 8), reference.search_vector("w003 w005", vector, 8))


def test_every_shard_damaged_is_an_error_naming_them(damaged_copy, embedder) -> None:
    for number in range(3):
        damage(damaged_copy / "n3" / f"shard-{number}", "deleted")
    collection = open_collection(damaged_copy, "n3", "cpu")
    with pytest.raises(CollectionError, match="no shard of collection 'n3' can be searched: shard-0 .*shard-2"):
        Retriever(collection, embedder, RetrieveSettings()).search_vector("w001", np.ones(embedder.dim), 3)
