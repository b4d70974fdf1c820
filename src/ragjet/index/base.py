"""The one small protocol every vector index follows, so collections and the retriever never care which."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self

import numpy as np


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised float32 vectors keyed by int64 ids.

    `search` returns (scores (Q, k) float32, ids (Q, k) int64), best first, padded with -inf / -1 when
    fewer than k vectors qualify; `allowed_ids` restricts results to those ids (metadata filters).
    `save` is atomic; `factory.load_index` reads any kind back.
    """

    kind: str
    dim: int

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def save(self, path: Path) -> None: ...
    @classmethod
    def load(cls, path: Path) -> Self: ...
