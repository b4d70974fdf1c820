"""FAISS IVF search on the GPU, when the installed faiss has GPU support (the faiss-gpu build).

The CPU index stays the source of truth: GPU IVF indexes can neither remove ids nor take an id
selector, and they are not serialisable. So the GPU holds a replica that serves unfiltered searches:
made on the first search, fed every later add, dropped on a removal and made again on the next search.
Filtered searches run on the CPU index.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import faiss
import numpy as np

ToGpu = Callable[[faiss.Index], faiss.Index]


def gpu_available() -> bool:
    """True when this faiss build can use a GPU and one is visible (faiss-cpu has neither)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def wants_gpu(device: str) -> bool:
    """index.device: 'auto' uses a GPU when faiss can; 'cuda' insists; 'cpu' never does."""
    if device == "cpu":
        return False
    if device.startswith("cuda") and not gpu_available():
        raise ValueError(
            f"index.device={device!r} needs a faiss build with GPU support (faiss-gpu) and a visible GPU; "
            "use 'auto' or 'cpu' with faiss-cpu"
        )
    return gpu_available()


def clone_to_gpu(index: faiss.Index) -> faiss.Index:
    """Copy a CPU index onto GPU 0 (shared resources: one scratch allocation per process)."""
    return faiss.index_cpu_to_gpu(_resources(), 0, index)


@functools.cache
def _resources() -> faiss.StandardGpuResources:
    return faiss.StandardGpuResources()


class GpuReplica:
    """A GPU copy of a CPU IVF index, kept equal to it (see the module docstring)."""

    def __init__(self, to_gpu: ToGpu = clone_to_gpu):
        self._to_gpu = to_gpu
        self._index: faiss.Index | None = None

    @property
    def is_live(self) -> bool:
        return self._index is not None

    def search(self, source: faiss.Index, queries: np.ndarray, k: int, nprobe: int) -> np.ndarray:
        """Candidate ids (Q, k) from the replica of `source`, made first if there is none."""
        if self._index is None:
            self._index = self._to_gpu(source)
        _, ids = self._index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))  # type: ignore[call-arg]
        return ids

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if self._index is not None:
            self._index.add_with_ids(vectors, ids)

    def drop(self) -> None:
        self._index = None
