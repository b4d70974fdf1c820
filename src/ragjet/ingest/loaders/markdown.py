"""Markdown: ATX (``## Title``) and setext (``Title`` over ``===``/``---``) headings become heading paths.

Deliberate simplifications: ATX headings must start at column 0 (so indented code comments such as
``   # note`` stay text), a setext underline counts only under a single-line paragraph, and fenced
code blocks (``` or ~~~) are never searched for headings. A leading YAML front matter block is
dropped; its ``title:`` line, if any, becomes the document title.
"""

from __future__ import annotations

import re

from ragjet.ingest.document import Section
from ragjet.ingest.loaders.outline import Outline

_ATX = re.compile(r"(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"(=+|-+)[ \t]*$")
_FENCE = re.compile(r"[ ]{0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def parse_markdown(text: str) -> tuple[str | None, list[Section]]:
    """Return (title, sections); title is the front-matter title, else the first level-1 heading."""
    title, body = _split_front_matter(text)
    outline = Outline()
    lines = body.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        if fence is not None:
            fence = None if line.strip().startswith(fence) else fence
            outline.line(line)
            continue
        fence_match = _FENCE.match(line)
        if fence_match:
            fence = fence_match.group(1)
            outline.line(line)
            continue
        heading = _heading_at(lines, i)
        if heading is None:
            outline.line(line)
            continue
        level, heading_text = heading
        if level == 1 and title is None:
            title = heading_text
        if _SETEXT.match(line):
            outline.drop_last_line()
        outline.heading(level, heading_text)
    return title, outline.finish()


def _heading_at(lines: list[str], i: int) -> tuple[int, str] | None:
    line = lines[i]
    atx = _ATX.match(line)
    if atx:
        return len(atx.group(1)), atx.group(2).strip()
    setext = _SETEXT.match(line)
    previous = lines[i - 1] if i >= 1 else ""
    if setext and previous.strip() and not _ATX.match(previous) and not _FENCE.match(previous):
        single_line_paragraph = i == 1 or not lines[i - 2].strip()
        if single_line_paragraph:
            return (1 if setext.group(1)[0] == "=" else 2), lines[i - 1].strip()
    return None


def _split_front_matter(text: str) -> tuple[str | None, str]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    title = _FRONT_TITLE.search(match.group(1))
    return (title.group(1).strip("\"'") if title else None), text[match.end() :]
