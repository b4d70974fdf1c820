"""Synthetic vectors shared by the index tests: clustered like real embeddings, with exact answers from numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 32


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, num_centres: int = 100, spread: float = 0.35) -> np.ndarray:
    """Unit vectors scattered around `num_centres` random centres, so an IVF index has structure to learn."""
    centres = unit(rng.standard_normal((num_centres, DIM)))
    return unit(centres[rng.integers(num_centres, size=n)] + spread * rng.standard_normal((n, DIM)) / np.sqrt(DIM))


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def recall(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, expected, strict=True)]))


@dataclass(frozen=True, slots=True)
class VectorSet:
    ids: np.ndarray  # (N,) int64, deliberately not 0..N-1
    vectors: np.ndarray  # (N, DIM) float32, unit length
    queries: np.ndarray  # (Q, DIM) float32, unit length, from the same distribution
