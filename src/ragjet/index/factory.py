"""Build the vector index a collection's parameters name, and load any saved index by the kind stored in it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ragjet.index.base import VectorIndex
from ragjet.index.faiss_index import FaissIndex
from ragjet.index.flat import FlatIndex
from ragjet.index.params import INDEX_KINDS, IndexParams


def build_index(params: IndexParams, dim: int, device: str = "auto") -> VectorIndex:
    """A new empty index; ``device`` (index.device) is where it searches."""
    if params.kind == "flat":
        return FlatIndex(dim, device)
    return FaissIndex(dim, params, device)


def load_index(path: Path, device: str = "auto") -> VectorIndex:
    """Raises ValueError (saying to rebuild) for a file that is missing, truncated or not an index."""
    try:
        with np.load(path) as data:
            kind = str(data["kind"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable vector index ({exc}); rebuild it from the chunk store") from exc
    if kind == "flat":
        return FlatIndex.load(path, device)
    if kind in INDEX_KINDS:
        return FaissIndex.load(path, device)
    raise ValueError(f"{path}: unknown index kind {kind!r}")
