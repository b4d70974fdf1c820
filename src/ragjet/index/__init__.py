"""Vector and keyword indexes behind one small protocol: exact (torch), FAISS ANN with refine, BM25."""

from ragjet.index.base import VectorIndex
from ragjet.index.bm25 import BM25Index
from ragjet.index.factory import INDEX_KINDS, build_index, load_index
from ragjet.index.faiss_index import FaissIndex
from ragjet.index.flat import FlatIndex

__all__ = ["INDEX_KINDS", "BM25Index", "FaissIndex", "FlatIndex", "VectorIndex", "build_index", "load_index"]
