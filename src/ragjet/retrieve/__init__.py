"""Two-stage retrieval: coarse ANN candidates, exact rescoring, BM25 fusion."""

from ragjet.retrieve.types import SearchHit, SearchResult

__all__ = ["SearchHit", "SearchResult"]
