"""BM25Index on Python's own language reference: keyword queries find the page that a person would open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragjet.index import BM25Index
from ragjet.index.bm25 import BM25Stats, tokenize
from ragjet.ingest.demo import demo_documents


@pytest.fixture(scope="module")
def titles() -> list[str]:
    return [d.title for d in demo_documents()]


@pytest.fixture()
def index() -> BM25Index:
    index = BM25Index()
    documents = demo_documents()
    index.add(np.arange(len(documents)) + 100, [d.text for d in documents])
    return index


def top_title(index: BM25Index, titles: list[str], query: str, allowed_ids: np.ndarray | None = None) -> str:
    _, ids = index.search(query, 3, allowed_ids)
    return titles[ids[0] - 100]


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("nonlocal statement", "nonlocal"),
        ("__init__ method called after instance creation", "customization"),
        ("with statement context manager __enter__", "with"),
        ("yield expression generator", "yield"),
        ("coroutine function async def", "async"),
    ],
)
def test_keyword_queries_rank_the_right_page_first(index: BM25Index, titles: list[str], query: str, title: str) -> None:
    assert top_title(index, titles, query) == title


def test_tokens_keep_identifiers_and_drop_stopwords() -> None:
    assert tokenize("The __init__ of a Class, yield_from x2") == ["__init__", "class", "yield_from", "x2"]


def test_no_shared_term_gives_padding(index: BM25Index) -> None:
    scores, ids = index.search("the of and", 4)
    assert (ids == -1).all() and np.isinf(scores).all()
    scores, ids = BM25Index().search("yield", 2)
    assert (ids == -1).all()


def test_allowed_ids_and_removal_rebuild_on_the_next_search(index: BM25Index, titles: list[str]) -> None:
    yield_id = 100 + titles.index("yield")
    _, ids = index.search("yield generator", 10, allowed_ids=np.array([yield_id, 100 + titles.index("return")]))
    assert set(ids[:2]) == {yield_id, 100 + titles.index("return")} and (ids[2:] == -1).all()
    index.remove(np.array([yield_id]))
    assert top_title(index, titles, "yield expression generator") != "yield"
    assert len(index) == len(titles) - 1
    index.add(np.array([yield_id]), ["a page about yield and nothing else"])
    assert index.search("yield", 1)[1][0] == yield_id


def test_save_load_round_trip_and_damaged_file(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path / "bm25.bin")
    loaded = BM25Index.load(tmp_path / "bm25.bin")
    for a, b in zip(loaded.search("context manager", 5), index.search("context manager", 5), strict=True):
        np.testing.assert_array_equal(a, b)
    data = (tmp_path / "bm25.bin").read_bytes()
    (tmp_path / "bm25.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="bm25.bin: not a readable BM25 index.*rebuild"):
        BM25Index.load(tmp_path / "bm25.bin")
    with pytest.raises(ValueError, match="not a readable BM25 index"):
        BM25Index.load(tmp_path / "missing.bin")


def test_bad_input_is_refused(index: BM25Index) -> None:
    with pytest.raises(ValueError, match="k must"):
        index.search("yield", 0)
    with pytest.raises(ValueError, match="2 ids for 1 texts"):
        index.add(np.arange(2), ["one"])
    with pytest.raises(ValueError, match="unique"):
        index.add(np.array([100]), ["already there"])


def test_scores_match_bm25s_the_reference(index: BM25Index) -> None:
    """ragjet scores BM25 itself (so shards can share statistics); bm25s's Lucene variant is the reference."""
    import bm25s

    documents = demo_documents()
    reference = bm25s.BM25()
    reference.index([tokenize(d.text) for d in documents], show_progress=False)
    for query in ("yield expression generator", "context manager __enter__ __exit__", "class class method"):
        expected = reference.get_scores([t for t in tokenize(query) if t in reference.vocab_dict])
        scores, ids = index.search(query, 20)
        found = ids >= 0
        assert found.sum() == min(20, (expected > 0).sum())
        np.testing.assert_allclose(scores[found], expected[ids[found] - 100], rtol=2e-6)
        assert ids[0] - 100 == int(np.argmax(expected))


def test_halves_scored_with_merged_stats_rank_as_the_whole(index: BM25Index) -> None:
    """A sharded collection's BM25: each shard scores with the summed statistics, so a merge equals one index."""
    documents = demo_documents()
    halves = [BM25Index(), BM25Index()]
    for i, d in enumerate(documents):
        halves[i % 2].add(np.array([100 + i]), [d.text])
    for query in ("yield expression generator", "nonlocal statement", "async def coroutine"):
        stats = BM25Stats.merged([h.stats(query) for h in halves])
        assert stats == index.stats(query)
        parts = [h.search(query, 10, stats=stats) for h in halves]
        scores, ids = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        top = np.lexsort((ids, -scores))[:10]
        whole_scores, whole_ids = index.search(query, 10)
        np.testing.assert_array_equal(ids[top], whole_ids)
        np.testing.assert_array_equal(scores[top], whole_scores)  # bit for bit: the same terms, the same order
        assert not np.array_equal(halves[0].search(query, 10)[0], parts[0][0])  # local statistics would differ
