"""Two-stage retrieval: coarse ANN candidates, exact rescoring, BM25 fusion."""

from ragjet.retrieve.fusion import reciprocal_rank_fusion
from ragjet.retrieve.retriever import Retriever
from ragjet.retrieve.types import SearchHit, SearchResult

__all__ = ["Retriever", "SearchHit", "SearchResult", "reciprocal_rank_fusion"]
