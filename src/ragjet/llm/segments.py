"""A prompt in pieces: which parts are retrieved chunks whose K/V may be reused in another prompt.

The RAG layer knows where each retrieved chunk sits in the prompt it built; the engine only sees tokens.
`PromptSegments` carries the boundary across: the text in pieces, each piece a chunk (reusable, with the
chunk's id as a tag) or glue (system prompt, source headers, the question: always computed). The engine
tokenizes piece by piece, so a chunk's tokens are the same wherever the chunk lands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    chunk_tag: str | None = None  # the chunk's id when this piece is a retrieved chunk's text, else None (glue)


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Tokens [start, end) of a prompt that are one retrieved chunk."""

    start: int
    end: int
    tag: str

    @property
    def num_tokens(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PromptSegments:
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        """The whole prompt, as a backend without chunk reuse sends it."""
        return "".join(s.text for s in self.segments)

    def tokenize(self, encode: Callable[[str], list[int]]) -> tuple[list[int], list[ChunkSpan]]:
        """Token ids piece by piece, and the span of every non-empty chunk piece."""
        ids: list[int] = []
        spans: list[ChunkSpan] = []
        for segment in self.segments:
            piece = encode(segment.text) if segment.text else []
            if segment.chunk_tag is not None and piece:
                spans.append(ChunkSpan(len(ids), len(ids) + len(piece), segment.chunk_tag))
            ids += piece
        return ids, spans


def split_at_chunks(text: str, chunks: list[tuple[str, str]]) -> PromptSegments:
    """``text`` cut around each (tag, chunk text), found in order; a chunk not found stays glue.

    The RAG layer renders its prompt through the chat template and then marks where each chunk's text
    landed, so the segments join back to exactly the rendered prompt.
    """
    segments: list[Segment] = []
    pos = 0
    for tag, chunk in chunks:
        at = text.find(chunk, pos) if chunk else -1
        if at < 0:
            continue
        segments += [Segment(text[pos:at]), Segment(chunk, tag)]
        pos = at + len(chunk)
    segments.append(Segment(text[pos:]))
    return PromptSegments(tuple(s for s in segments if s.text))
