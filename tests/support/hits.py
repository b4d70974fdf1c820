"""A search hit as the prompt builder reads it (ragjet.rag.prompt.RetrievedChunk), for prompt-level tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    text: str
    score: float
    source: str = "doc.md"
    title: str = "Doc"
    heading: str = ""
    page: int | None = None
