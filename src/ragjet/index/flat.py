"""Exact vector search: one matmul of a batch of queries against every stored vector, then top-k. fp16 storage on
CUDA, grown by doubling its capacity (an ingest adding a few chunks at a time copies the matrix O(log N) times,
not once per add).

The exact index is the reference the approximate ones are measured against, the rescoring stage of
two-stage retrieval, and the backup index when an approximate one fails.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ragjet.atomic import atomic_write
from ragjet.device import pick_device

CHUNK_ROWS = 262_144  # scores computed this many stored vectors at a time, so 1M x 384 stays in memory
MIN_CAPACITY = 1024  # rows first allocated


class FlatIndex:
    kind = "flat"

    def __init__(self, dim: int, device: str = "auto"):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.device = pick_device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self._storage = torch.empty(0, dim, dtype=self.dtype, device=self.device)  # rows past len(self) unused
        self._ids = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def _vectors(self) -> torch.Tensor:
        return self._storage[: len(self._ids)]

    def _reserve(self, rows: int) -> None:
        """Room for ``rows`` vectors: the storage doubles (at least) when it runs out."""
        if rows <= len(self._storage):
            return
        grown = torch.empty(max(rows, 2 * len(self._storage), MIN_CAPACITY), self.dim, dtype=self.dtype,
                            device=self.device)  # fmt: skip
        grown[: len(self)] = self._vectors
        self._storage = grown

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = np.asarray(ids, dtype=np.int64), self._checked(vectors)
        if ids.shape != (len(vectors),):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._ids).any():
            raise ValueError("ids must be unique and not already in the index")
        start = len(self)
        self._reserve(start + len(ids))
        self._storage[start : start + len(ids)] = torch.from_numpy(vectors).to(self.device, self.dtype)
        self._ids = np.concatenate([self._ids, ids])

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        kept = self._vectors[torch.from_numpy(keep).to(self.device)]
        self._storage[: len(kept)] = kept
        self._ids = self._ids[keep]

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k), best first; padded with -inf / -1 when fewer vectors qualify."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = torch.from_numpy(self._checked(queries)).to(self.device, self.dtype)
        mask = None if allowed_ids is None else torch.from_numpy(np.isin(self._ids, allowed_ids)).to(self.device)
        best_scores = torch.full((len(q), 0), float("-inf"), device=self.device)
        best_rows = torch.empty((len(q), 0), dtype=torch.long, device=self.device)
        for start in range(0, len(self), CHUNK_ROWS):
            scores = (q @ self._vectors[start : start + CHUNK_ROWS].T).float()
            if mask is not None:
                scores[:, ~mask[start : start + CHUNK_ROWS]] = float("-inf")
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, top.values], 1)
            best_rows = torch.cat([best_rows, top.indices + start], 1)
            keep = best_scores.topk(min(k, best_scores.shape[1]), dim=1).indices
            best_scores, best_rows = best_scores.gather(1, keep), best_rows.gather(1, keep)
        return self._padded(best_scores.cpu().numpy(), best_rows.cpu().numpy(), k)

    def _padded(self, scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_scores = np.full((len(scores), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(scores), k), -1, dtype=np.int64)
        n = scores.shape[1]
        out_scores[:, :n] = scores
        out_ids[:, :n] = np.where(np.isfinite(scores), self._ids[rows] if n else rows, -1)
        out_scores[out_ids == -1] = -np.inf
        return out_scores, out_ids

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (N, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        return vectors

    def save(self, path: Path) -> None:
        """Atomically: written to a temporary file, flushed to disk, then renamed over `path`."""
        with atomic_write(path) as f:
            np.savez(f, kind=self.kind, ids=self._ids, vectors=self._vectors.float().cpu().numpy())

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> FlatIndex:
        try:
            with np.load(path) as data:
                ids, vectors = data["ids"], data["vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable flat index ({exc}); rebuild it from the chunk store") from exc
        index = cls(vectors.shape[1], device)
        index.add(ids, vectors)
        return index
