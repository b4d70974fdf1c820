"""Index fixtures: one clustered vector set and its exact answers, shared by the index tests."""

from __future__ import annotations

import numpy as np
import pytest

from support.vectors import VectorSet, clustered


@pytest.fixture(scope="session")
def vector_set() -> VectorSet:
    rng = np.random.default_rng(7)
    data = clustered(rng, 12_050)  # IVF-PQ trains from 10,000 vectors
    return VectorSet(np.arange(12_000, dtype=np.int64) * 3 + 5, data[:12_000], data[12_000:])
