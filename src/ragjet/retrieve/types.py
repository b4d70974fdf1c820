"""Retrieval results: ranked chunk hits with the scores of each stage and where the text came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SearchHit:
    rank: int  # 1-based
    chunk_id: str
    score: float  # fused score the ranking uses
    dense_score: float | None  # exact cosine similarity to the query
    bm25_score: float | None
    source: str
    title: str
    heading: str
    page: int | None
    text: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[SearchHit]
    search_ms: float
    rerank_ms: float
    fallback: str | None = None  # why the backup index answered instead of the primary one
    rerank_note: str | None = None  # what the cross-encoder did, when one is configured
