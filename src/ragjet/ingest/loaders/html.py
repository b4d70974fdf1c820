"""HTML: visible text in reading order; h1–h6 open sections, block elements end paragraphs.

Parsed with BeautifulSoup on the standard library's ``html.parser`` (no lxml needed). Scripts,
styles, navigation and other non-content elements are dropped; ``<pre>`` keeps its whitespace.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from ragjet.ingest.document import Section
from ragjet.ingest.loaders.outline import Outline

DROPPED_TAGS = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg", "iframe"})
BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
        "footer", "form", "header", "hr", "li", "main", "ol", "p", "pre", "section", "table", "td", "th",
        "tr", "ul",
    }
)  # fmt: skip
HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
_NON_TEXT_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
_SPACES = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def declared_charset(raw: bytes) -> str | None:
    """The charset a ``<meta>`` tag declares in the first 4 KiB, if any."""
    match = _META_CHARSET.search(raw[:4096])
    return match.group(1).decode("ascii") if match else None


def parse_html(text: str) -> tuple[str | None, list[Section]]:
    """Return (title, sections); title is ``<title>``, else the first ``<h1>``."""
    soup = BeautifulSoup(text, "html.parser")
    title = _clean(soup.title.get_text()) if soup.title else ""
    if not title and (h1 := soup.find("h1")) is not None:
        title = _clean(h1.get_text())
    walker = _Walker()
    walker.visit(soup)
    return title or None, walker.finish()


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class _Walker:
    """Depth-first walk that buffers inline text until a block boundary or a heading."""

    def __init__(self) -> None:
        self._outline = Outline()
        self._inline: list[str] = []

    def visit(self, node: PageElement) -> None:
        if isinstance(node, NavigableString):
            if not isinstance(node, _NON_TEXT_STRINGS):
                self._inline.append(str(node))
            return
        if not isinstance(node, Tag) or node.name in DROPPED_TAGS:
            return
        if node.name in HEADING_TAGS:
            self._end_paragraph()
            self._outline.heading(HEADING_TAGS[node.name], _clean(node.get_text()))
            return
        if node.name == "pre":
            self._end_paragraph()
            code = node.get_text().strip("\n")
            if code.strip():
                self._outline.paragraph(code)
            return
        is_block = node.name in BLOCK_TAGS
        if is_block:
            self._end_paragraph()
        for child in node.children:
            self.visit(child)
        if is_block:
            self._end_paragraph()

    def finish(self) -> list[Section]:
        self._end_paragraph()
        return self._outline.finish()

    def _end_paragraph(self) -> None:
        paragraph = _clean("".join(self._inline))
        self._inline = []
        if paragraph:
            self._outline.paragraph(paragraph)
