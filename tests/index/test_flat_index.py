"""FlatIndex is exact: it agrees with numpy, honours filters and removals, and survives a round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragjet.index import FlatIndex


def unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matches_exact_numpy_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragjet.index.flat.CHUNK_ROWS", 100)  # exercise the chunked merge
    rng = np.random.default_rng(0)
    vectors, queries = unit(rng, 1000), unit(rng, 7)
    index = FlatIndex(32, device="cpu")
    index.add(np.arange(1000) * 10, vectors)
    scores, ids = index.search(queries, 5)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5] * 10
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, expected // 10, 1), atol=1e-5)


def test_allowed_ids_removal_and_padding() -> None:
    rng = np.random.default_rng(1)
    index = FlatIndex(32, device="cpu")
    index.add(np.arange(50), unit(rng, 50))
    query = unit(rng, 1)
    _, ids = index.search(query, 10, allowed_ids=np.array([3, 7, 11]))
    assert set(ids[0][:3]) == {3, 7, 11} and (ids[0][3:] == -1).all()
    index.remove(np.array([3, 7]))
    scores, ids = index.search(query, 5, allowed_ids=np.array([3, 7, 11]))
    assert ids[0][0] == 11 and (ids[0][1:] == -1).all() and np.isinf(scores[0][1:]).all()
    assert len(index) == 48


def test_save_load_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    index = FlatIndex(32, device="cpu")
    index.add(np.arange(20), unit(rng, 20))
    index.save(tmp_path / "flat.npz")
    loaded = FlatIndex.load(tmp_path / "flat.npz", device="cpu")
    query = unit(rng, 2)
    np.testing.assert_array_equal(loaded.search(query, 4)[1], index.search(query, 4)[1])
    data = (tmp_path / "flat.npz").read_bytes()
    (tmp_path / "flat.npz").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="rebuild"):
        FlatIndex.load(tmp_path / "flat.npz")


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (np.arange(2), np.zeros((2, 8), np.float32), "shape"),
        (np.arange(3), np.zeros((2, 32), np.float32), "ids"),
        (np.array([1, 1]), np.zeros((2, 32), np.float32), "unique"),
        (np.arange(1), np.full((1, 32), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input_is_refused(ids: np.ndarray, vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlatIndex(32, device="cpu").add(ids, vectors)
    with pytest.raises(ValueError, match="k must"):
        FlatIndex(32, device="cpu").search(np.zeros((1, 32), np.float32), 0)


def test_adds_grow_the_storage_by_doubling_and_searches_stay_exact() -> None:
    """3,000 vectors added 10 at a time (as an ingest adds a document's chunks): the matrix is reallocated only
    when its capacity doubles, and a batch of queries gets what each query alone gets, exactly numpy's answer."""
    rng = np.random.default_rng(2)
    vectors, queries = unit(rng, 3000), unit(rng, 16)
    index = FlatIndex(32, device="cpu")
    buffers = set()
    for start in range(0, 3000, 10):
        index.add(np.arange(start, start + 10), vectors[start : start + 10])
        buffers.add(index._storage.data_ptr())
    assert len(buffers) == 3 and len(index._storage) == 4096  # 1,024 -> 2,048 -> 4,096 rows
    index.remove(np.arange(0, 3000, 2))  # compacted in place
    assert len(index) == 1500 and index._storage.data_ptr() in buffers
    kept = vectors[1::2]
    _, batch = index.search(queries, 5)
    np.testing.assert_array_equal(batch, np.argsort(-(queries @ kept.T), axis=1)[:, :5] * 2 + 1)
    for q, row in zip(queries, batch, strict=True):
        np.testing.assert_array_equal(index.search(q[None], 5)[1][0], row)
