"""Approximate vector search with FAISS (IVF-Flat, IVF-PQ, HNSW), followed by an exact refine step.

The full-precision vectors are kept beside the FAISS index: the ANN proposes `refine_factor * k`
candidates, which are rescored exactly, so the scores returned are true inner products and recall
lost to quantisation (PQ) is mostly won back. An IVF index needs training data; until the index holds
enough vectors to train it, search is exact over the stored vectors (logged once), which is also
faster at that size. HNSW cannot delete: removed ids become tombstones filtered from results, and the
graph is rebuilt once they reach a quarter of the index. With faiss-gpu, unfiltered IVF searches run on
a GPU replica (`faiss_gpu.GpuReplica`); faiss has no GPU HNSW, so HNSW stays on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from pathlib import Path

import faiss
import numpy as np

from ragjet.atomic import atomic_write
from ragjet.index.faiss_gpu import GpuReplica, wants_gpu
from ragjet.index.params import IndexParams

log = logging.getLogger(__name__)

MIN_TRAIN = {"ivf_flat": 2048, "ivf_pq": 10_000, "hnsw": 0}  # below this many vectors search stays exact
EXACT_FILTER_LIMIT = 50_000  # filtered searches over at most this many ids are done exactly


class FaissIndex:
    def __init__(self, dim: int, params: IndexParams, device: str = "auto", gpu: GpuReplica | None = None):
        """`gpu`: where unfiltered IVF searches go; by default a GPU replica when `device` and faiss allow."""
        if params.kind not in MIN_TRAIN:
            raise ValueError(f"FaissIndex builds {', '.join(MIN_TRAIN)}, not {params.kind!r}")
        if params.kind == "ivf_pq" and dim % params.pq_m:
            raise ValueError(f"index.pq_m={params.pq_m} must divide the vector dimension {dim}")
        self.dim, self.params = dim, params
        self.kind: str = params.kind
        self._ids = np.empty(0, dtype=np.int64)
        self._vectors = np.empty((0, dim), dtype=np.float32)
        self._row: dict[int, int] = {}
        self._tombstones: set[int] = set()
        self._ann: faiss.Index | None = None
        use_gpu = params.kind != "hnsw" and wants_gpu(device)
        self._gpu = gpu if gpu is not None else (GpuReplica() if use_gpu else None)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = np.asarray(ids, dtype=np.int64), _checked(vectors, self.dim)
        if ids.shape != (len(vectors),):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids) or any(int(i) in self._row for i in ids):
            raise ValueError("ids must be unique and not already in the index")
        start = len(self._ids)
        self._ids, self._vectors = np.concatenate([self._ids, ids]), np.concatenate([self._vectors, vectors])
        self._row.update((int(i), start + n) for n, i in enumerate(ids))
        if self._ann is not None:
            self._ann.add_with_ids(vectors, ids)
            if self._gpu is not None:
                self._gpu.add(vectors, ids)
        elif len(self) >= MIN_TRAIN[self.kind]:
            self._build()
        elif start == 0:
            log.info(
                "%s: %d vectors are too few to train (needs %d); searching exactly until then",
                self.kind,
                len(self),
                MIN_TRAIN[self.kind],
            )

    def remove(self, ids: np.ndarray) -> None:
        gone = [int(i) for i in np.asarray(ids, dtype=np.int64) if int(i) in self._row]
        if not gone:
            return
        keep = ~np.isin(self._ids, gone)
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]
        self._row = {int(i): n for n, i in enumerate(self._ids)}
        if self._ann is None:
            return
        if self.kind == "hnsw":
            self._tombstones.update(gone)
            if len(self._tombstones) > len(self) / 4:
                self._build()
        else:
            self._ann.remove_ids(faiss.IDSelectorBatch(np.asarray(gone, dtype=np.int64)))
            if self._gpu is not None:
                self._gpu.drop()

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = _checked(np.atleast_2d(queries), self.dim)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if self._ann is None or (allowed_ids is not None and len(allowed_ids) <= EXACT_FILTER_LIMIT):
            rows = np.arange(len(self)) if allowed_ids is None else self._rows_of(allowed_ids)
            return _exact(queries, self._vectors[rows], self._ids[rows], k)
        wanted = min(k * self.params.refine_factor + len(self._tombstones), len(self) + len(self._tombstones))
        if self._gpu is not None and allowed_ids is None:
            candidates = self._gpu.search(self._ann, queries, max(wanted, 1), self.params.nprobe)
        else:
            _, candidates = self._ann.search(queries, max(wanted, 1), params=self._params(allowed_ids))
        scores, ids = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        for q, row_ids in enumerate(candidates):
            rows = self._rows_of(row_ids)  # drops padding and tombstones
            scores[q], ids[q] = _exact(queries[q : q + 1], self._vectors[rows], self._ids[rows], k)
        return scores, ids

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray([self._row[i] for i in np.asarray(ids).tolist() if i in self._row], dtype=np.int64)

    def _params(self, allowed_ids: np.ndarray | None) -> faiss.SearchParameters:
        selector = None if allowed_ids is None else faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.params.ef_search)  # type: ignore[attr-defined]
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.params.nprobe)  # type: ignore[call-arg]

    def _build(self) -> None:
        """(Re)build the ANN over every stored vector, training IVF centroids and PQ codebooks on them."""
        n, s = len(self), self.params
        ann: faiss.Index
        if self.kind == "hnsw":
            ann = faiss.IndexIDMap2(faiss.IndexHNSWFlat(self.dim, s.hnsw_m, faiss.METRIC_INNER_PRODUCT))
        else:
            nlist = s.nlist or max(16, min(int(4 * math.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            if self.kind == "ivf_flat":
                ann = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                ann = faiss.IndexIVFPQ(quantizer, self.dim, nlist, s.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            ann.train(self._vectors)
            self._quantizer = quantizer  # the IVF index points at it without owning it
            log.info("trained %s on %d vectors (nlist=%d)", self.kind, n, nlist)
        ann.add_with_ids(self._vectors, self._ids)
        self._ann, self._tombstones = ann, set()
        if self._gpu is not None:
            self._gpu.drop()

    def save(self, path: Path) -> None:
        meta = {"kind": self.kind, "params": self.params.to_dict(), "tombstones": sorted(self._tombstones)}
        ann = np.zeros(0, np.uint8) if self._ann is None else faiss.serialize_index(self._ann)
        with atomic_write(path) as f:
            np.savez(f, kind=self.kind, meta=json.dumps(meta), ids=self._ids, vectors=self._vectors, ann=ann)

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> FaissIndex:
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                params = IndexParams.from_dict(meta.get("params") or meta["settings"])  # "settings": layout 1
                index = cls(data["vectors"].shape[1], params, device)
                index._ids, index._vectors = data["ids"].astype(np.int64), data["vectors"].astype(np.float32)
                if len(data["ann"]):
                    index._ann = faiss.deserialize_index(data["ann"])
        except (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable FAISS index ({exc}); rebuild it from the chunk store") from exc
        index._row = {int(i): n for n, i in enumerate(index._ids)}
        index._tombstones = set(meta["tombstones"])
        return index


def _checked(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (N, {dim}), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    return vectors


def _exact(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, out = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    if len(ids):
        all_scores = queries @ vectors.T
        top = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        scores[:, : top.shape[1]] = np.take_along_axis(all_scores, top, axis=1)
        out[:, : top.shape[1]] = ids[top]
    return scores, out
