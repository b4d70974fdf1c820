"""Two-stage retrieval over a real collection: right chunks, fusion, filters, the BM25 backup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.ingest.chunker import Chunker
from ragjet.rag.ingestion import ingest_paths
from ragjet.retrieve import Retriever, reciprocal_rank_fusion
from ragjet.store import Collection


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def collection(tmp_path_factory, corpus_dir: Path, embedder: Embedder) -> Collection:
    root = tmp_path_factory.mktemp("collections")
    created = Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams())
    ingest_paths(created, [corpus_dir], embedder, Chunker(embedder.tokenizer, max_tokens=48, overlap_tokens=0))
    return Collection.open(root, "facts")


@pytest.mark.parametrize(
    ("question", "source", "words"),
    [
        ("Who designed the lens that focuses a lighthouse beam?", "lighthouse.md", "Fresnel"),
        ("How hot should the oven be for baking bread?", "bread.md", "240 degrees"),
        ("Which kind of lava is explosive?", "volcano.md", "rhyolitic"),
    ],
)
def test_the_right_chunk_ranks_first(collection, embedder, question, source, words) -> None:
    result = Retriever(collection, embedder, RetrieveSettings()).search(question, top_k=3)
    best = result.hits[0]
    assert Path(best.source).name == source and words in best.text
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert best.dense_score == pytest.approx(
        float(embedder.embed([question])[0] @ embedder.embed([best.text])[0]), abs=2e-2
    )
    assert result.fallback is None and result.search_ms > 0


def test_without_bm25_the_score_is_the_exact_cosine(collection, embedder) -> None:
    hits = Retriever(collection, embedder, RetrieveSettings(use_bm25=False)).search("active volcano", top_k=4).hits
    assert all(h.bm25_score is None and h.score == h.dense_score for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters_restrict_the_candidates(collection, embedder) -> None:
    retriever = Retriever(collection, embedder, RetrieveSettings())
    bread = next(d.source for d in collection.documents() if d.source.endswith("bread.md"))
    hits = retriever.search("Who designed the Fresnel lens?", top_k=5, filters={"source": bread}).hits
    assert hits and {h.source for h in hits} == {bread}
    prefix = str(Path(bread).parent) + "/"
    assert (
        len(retriever.search("lava", top_k=50, filters={"source_prefix": prefix}).hits) == collection.info().num_chunks
    )
    assert retriever.search("lava", filters={"title": "no such title"}).hits == []
    with pytest.raises(ValueError, match=r"unknown filter 'colour'.*source_prefix"):
        retriever.search("lava", filters={"colour": "red"})


def test_a_failing_vector_index_falls_back_to_bm25_and_says_so(collection, embedder, monkeypatch) -> None:
    retriever = Retriever(collection, embedder, RetrieveSettings(use_bm25=False))

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("index file vanished")

    monkeypatch.setattr(collection.index, "search", broken)
    result = retriever.search("Fresnel lens lighthouse", top_k=2)
    assert "index failed (OSError: index file vanished); answered by BM25" in (result.fallback or "")
    assert "Fresnel" in result.hits[0].text and result.hits[0].dense_score is not None
    monkeypatch.undo()
    assert retriever.search("Fresnel lens lighthouse", top_k=2).fallback is None  # the next request is back to normal


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    ids, scores = reciprocal_rank_fusion([np.array([1, 2, 3, -1]), np.array([3, 1, 4])], rrf_k=60)
    assert ids.tolist() == [1, 3, 2, 4]
    assert scores[0] == pytest.approx(1 / 61 + 1 / 62) and scores[2] == pytest.approx(1 / 62)


def test_bad_arguments_are_clear(collection, embedder) -> None:
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        Retriever(collection, embedder, RetrieveSettings()).search("lava", top_k=0)
