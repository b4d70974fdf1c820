"""Vector and keyword indexes behind one small protocol: exact (torch), FAISS ANN with refine, BM25."""

from ragjet.index.base import VectorIndex
from ragjet.index.bm25 import BM25Index
from ragjet.index.factory import build_index, load_index
from ragjet.index.faiss_index import FaissIndex
from ragjet.index.flat import FlatIndex
from ragjet.index.params import INDEX_KINDS, IndexParams

__all__ = [
    "INDEX_KINDS", "BM25Index", "FaissIndex", "FlatIndex", "IndexParams", "VectorIndex", "build_index", "load_index",
]  # fmt: skip
