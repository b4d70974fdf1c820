"""FaissIndex against brute force: recall, exact refined scores, filters, removal, persistence, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from ragjet.index import FaissIndex, IndexParams, load_index
from ragjet.index.faiss_gpu import GpuReplica, gpu_available
from support.vectors import DIM, VectorSet, clustered, exact_top_k, recall

ANN_KINDS = ("ivf_flat", "ivf_pq", "hnsw")


def params(kind: str, refine_factor: int = 4) -> IndexParams:
    return IndexParams(kind=kind, pq_m=16, nprobe=16, ef_search=64, refine_factor=refine_factor)


@pytest.fixture(scope="module", params=ANN_KINDS)
def built(request: pytest.FixtureRequest, vector_set: VectorSet) -> FaissIndex:
    """One trained index per kind, shared by the tests that only search it."""
    index = FaissIndex(DIM, params(request.param))
    index.add(vector_set.ids, vector_set.vectors)
    return index


def test_recall_at_10_against_exact_search(built: FaissIndex, vector_set: VectorSet) -> None:
    _, ids = built.search(vector_set.queries, 10)
    expected = exact_top_k(vector_set.queries, vector_set.vectors, vector_set.ids, 10)
    assert recall(ids, expected) >= 0.9, built.kind


def test_refined_scores_are_exact_inner_products(built: FaissIndex, vector_set: VectorSet) -> None:
    scores, ids = built.search(vector_set.queries, 10)
    rows = (ids - 5) // 3  # ids are 3 * row + 5
    exact = np.einsum("qd,qkd->qk", vector_set.queries, vector_set.vectors[rows])
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_refine_wins_back_the_recall_pq_loses(vector_set: VectorSet) -> None:
    expected = exact_top_k(vector_set.queries, vector_set.vectors, vector_set.ids, 10)
    found = {}
    for refine_factor in (1, 4):
        index = FaissIndex(DIM, params("ivf_pq", refine_factor))
        index.add(vector_set.ids, vector_set.vectors)
        found[refine_factor] = recall(index.search(vector_set.queries, 10)[1], expected)
    assert found[1] < 0.9 <= found[4]


@pytest.mark.parametrize("exact_filter_limit", [0, 50_000])  # FAISS's id selector, then exact over the allowed rows
def test_allowed_ids_are_respected(
    built: FaissIndex, vector_set: VectorSet, monkeypatch: pytest.MonkeyPatch, exact_filter_limit: int
) -> None:
    monkeypatch.setattr("ragjet.index.faiss_index.EXACT_FILTER_LIMIT", exact_filter_limit)
    allowed = vector_set.ids[::2]
    _, ids = built.search(vector_set.queries, 10, allowed_ids=allowed)
    assert np.isin(ids, allowed).all()
    rows = np.arange(0, len(vector_set.ids), 2)
    assert recall(ids, exact_top_k(vector_set.queries, vector_set.vectors[rows], allowed, 10)) >= 0.85


def test_too_few_vectors_to_train_search_exactly_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    vectors = clustered(np.random.default_rng(3), 300)
    index = FaissIndex(DIM, params("ivf_pq"))
    with caplog.at_level(logging.INFO, logger="ragjet.index.faiss_index"):
        index.add(np.arange(300), vectors)
    assert "too few to train" in caplog.text
    scores, ids = index.search(vectors[:5], 3, allowed_ids=np.arange(100, 300))
    np.testing.assert_array_equal(ids, exact_top_k(vectors[:5], vectors[100:], np.arange(100, 300), 3))
    _, ids = index.search(vectors[:1], 400)
    assert (ids[0, :300] >= 0).all() and (ids[0, 300:] == -1).all()


@pytest.mark.parametrize("kind", ANN_KINDS)
def test_removed_ids_are_never_returned(kind: str, vector_set: VectorSet) -> None:
    index = FaissIndex(DIM, params(kind))
    index.add(vector_set.ids, vector_set.vectors)
    _, before = index.search(vector_set.queries, 10)
    gone = np.unique(before[:, :5])
    index.remove(gone)
    _, after = index.search(vector_set.queries, 10)
    assert len(index) == len(vector_set.ids) - len(gone)
    assert not np.isin(after, gone).any() and (after >= 0).all()


def test_hnsw_rebuilds_its_graph_when_tombstones_pile_up(vector_set: VectorSet) -> None:
    index = FaissIndex(DIM, params("hnsw"))
    index.add(vector_set.ids[:2000], vector_set.vectors[:2000])
    index.remove(vector_set.ids[:1000])  # half the graph: rebuilt without them
    _, ids = index.search(vector_set.queries, 10)
    expected = exact_top_k(vector_set.queries, vector_set.vectors[1000:2000], vector_set.ids[1000:2000], 10)
    assert recall(ids, expected) >= 0.95


@pytest.mark.parametrize("kind", ANN_KINDS)
def test_save_load_round_trip_keeps_results(kind: str, vector_set: VectorSet, tmp_path: Path) -> None:
    index = FaissIndex(DIM, params(kind))
    index.add(vector_set.ids, vector_set.vectors)
    index.remove(vector_set.ids[:10])
    index.save(tmp_path / "vectors.npz")
    loaded = load_index(tmp_path / "vectors.npz")
    assert isinstance(loaded, FaissIndex) and loaded.kind == kind and len(loaded) == len(index)
    for a, b in zip(loaded.search(vector_set.queries, 10), index.search(vector_set.queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded.add(np.array([-7]), vector_set.queries[:1])  # still writable after loading
    assert loaded.search(vector_set.queries[:1], 1)[1][0, 0] == -7


def test_bad_input_is_refused(vector_set: VectorSet) -> None:
    index = FaissIndex(DIM, params("hnsw"))
    index.add(vector_set.ids[:10], vector_set.vectors[:10])
    with pytest.raises(ValueError, match="shape"):
        index.add(np.arange(2), np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.arange(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match="unique"):
        index.add(vector_set.ids[:1], vector_set.vectors[:1])
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add(np.arange(2), vector_set.vectors[:1])
    with pytest.raises(ValueError, match="k must"):
        index.search(vector_set.queries, 0)
    with pytest.raises(ValueError, match="shape"):
        index.search(np.zeros((1, 8), np.float32), 3)
    with pytest.raises(ValueError, match="pq_m=7"):
        FaissIndex(DIM, IndexParams(kind="ivf_pq", pq_m=7))
    with pytest.raises(ValueError, match="not 'flat'"):
        FaissIndex(DIM, IndexParams(kind="flat"))


def test_gpu_replica_serves_unfiltered_search_and_follows_changes(vector_set: VectorSet) -> None:
    """The replica's bookkeeping, with a CPU clone standing in for the GPU copy (this machine has no GPU)."""
    copies: list[faiss.Index] = []

    def to_gpu(source: faiss.Index) -> faiss.Index:
        copies.append(faiss.clone_index(source))
        return copies[-1]

    replica, reference = GpuReplica(to_gpu), FaissIndex(DIM, params("ivf_flat"))
    index = FaissIndex(DIM, params("ivf_flat"), gpu=replica)
    for target in (index, reference):
        target.add(vector_set.ids[:3000], vector_set.vectors[:3000])
    assert not replica.is_live  # made on the first search, not at build
    _, ids = index.search(vector_set.queries, 10)
    np.testing.assert_array_equal(ids, reference.search(vector_set.queries, 10)[1])
    assert len(copies) == 1 and copies[0].ntotal == 3000

    for target in (index, reference):  # an add reaches the live replica; no new copy
        target.add(vector_set.ids[3000:], vector_set.vectors[3000:])
    np.testing.assert_array_equal(index.search(vector_set.queries, 10)[1], reference.search(vector_set.queries, 10)[1])
    assert len(copies) == 1 and copies[0].ntotal == len(vector_set.ids)

    gone = ids[:, 0]
    index.remove(gone)  # GPU IVF cannot remove: the replica is dropped and made again
    assert not replica.is_live
    _, after = index.search(vector_set.queries, 10)
    assert len(copies) == 2 and not np.isin(after, gone).any()

    allowed = vector_set.ids[::2]  # id selectors run on the CPU index
    index.search(vector_set.queries, 10, allowed_ids=allowed)
    assert len(copies) == 2


def test_cuda_index_device_without_faiss_gpu_is_a_clear_error() -> None:
    if gpu_available():
        pytest.skip("this faiss build has a GPU")
    with pytest.raises(ValueError, match="faiss-gpu"):
        FaissIndex(DIM, IndexParams(kind="ivf_flat"), device="cuda")
    assert FaissIndex(DIM, IndexParams(kind="ivf_flat"), device="auto")._gpu is None
