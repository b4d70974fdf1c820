"""What a collection reports about itself and its documents (JSON-safe: the REST API returns them as is)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    embedder_id: str
    dim: int
    index_kind: str
    num_documents: int
    num_chunks: int
    created_at: float
    updated_at: float
    format_version: int


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    source: str
    title: str
    content_hash: str
    num_chunks: int
    ingested_at: float
