"""Boundaries inside text as trimmed char spans: paragraphs, sentences, lines, words."""

from __future__ import annotations

import re
from itertools import pairwise

Span = tuple[int, int]  # [start, end) char offsets

PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? … (plus closing quotes/brackets) before whitespace, or at a CJK full stop.
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[”’」』）]*")
LINE_BREAK = re.compile(r"\n")
WHITESPACE = re.compile(r"\s+")
# What an oversize paragraph is cut at, coarsest first.
FINER_BREAKS = (SENTENCE_END, LINE_BREAK, WHITESPACE)


def trim(text: str, start: int, end: int) -> Span | None:
    """The span without leading/trailing whitespace, or None if nothing else is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def cut_spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    """Cut text[start:end] after every match of `pattern`; pieces are trimmed, empty ones dropped.

    Every non-whitespace character of the input lies in exactly one returned span.
    """
    return spans_between(text, [start, *(m.end() for m in pattern.finditer(text, start, end)), end])


def spans_between(text: str, bounds: list[int]) -> list[Span]:
    """Trimmed, non-empty spans between consecutive ascending char offsets."""
    spans = (trim(text, a, b) for a, b in pairwise(bounds))
    return [span for span in spans if span is not None]
