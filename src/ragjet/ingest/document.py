"""The units ingestion produces: documents split into structural sections, then token-bounded chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Section:
    """A structural piece of a document as its loader saw it (a heading's body, a PDF page)."""

    text: str
    heading: str = ""  # heading path, e.g. "Install > From source"
    page: int | None = None  # 1-based page for paged formats


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # absolute path (or caller-chosen id); the document's identity in a collection
    title: str
    sections: tuple[Section, ...]
    content_hash: str  # sha256 of the raw bytes, so re-ingesting an unchanged file is a no-op
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str  # stable: derived from source, position and text, so re-chunking the same input reuses ids
    source: str
    ordinal: int  # position within the document
    text: str
    num_tokens: int  # measured with the embedder's tokenizer
    heading: str = ""
    page: int | None = None


def chunk_id(source: str, ordinal: int, text: str) -> str:
    digest = hashlib.sha256(f"{source}\x00{ordinal}\x00{text}".encode()).hexdigest()
    return digest[:20]
