"""The demo corpus: Python's own language reference, shipped with every Python as `pydoc_data.topics`.

Each topic (``"if"``, ``"class"``, ...) is reST-like plain text whose headings are underlined
(``****`` for the title, then ``====``, ``----``, ``~~~~``). We rewrite those headings as markdown
``#`` headings and parse the result with the markdown loader, so `demo_documents()` and ingesting
the folder that `write_demo_corpus()` fills give the same titles, sections and content hashes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from pydoc_data.topics import topics

from ragjet.ingest.document import Document
from ragjet.ingest.loaders.markdown import parse_markdown

SOURCE_SCHEME = "pydoc://"
_UNDERLINE = re.compile(r"([*=\-~^\"+#])\1{2,}[ \t]*")


def topic_markdown(topic: str, text: str) -> str:
    """One topic as a markdown file: front matter with the topic as title, underlines as ``#`` headings."""
    levels: dict[str, int] = {}  # adornment character → heading level, in order of first use
    lines = text.split("\n")
    out = ["---", f"title: {topic}", "---"]
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_heading(lines, i):
            level = levels.setdefault(lines[i + 1][0], len(levels) + 1)
            out.append(f"{'#' * min(level, 6)} {line.strip()}")
            i += 2
            continue
        out.append(line)
        i += 1
    return "\n".join(out).rstrip("\n") + "\n"


def _is_heading(lines: list[str], i: int) -> bool:
    """A non-indented line after a blank one, underlined by a run of one adornment character at least as long."""
    if i + 1 >= len(lines) or not lines[i].strip() or lines[i][0].isspace():
        return False
    underline = lines[i + 1]
    return (
        (i == 0 or not lines[i - 1].strip())
        and _UNDERLINE.fullmatch(underline) is not None
        and len(underline.rstrip()) >= len(lines[i].rstrip())
    )


def demo_markdown() -> dict[str, str]:
    """Topic name → markdown text, sorted by topic."""
    return {topic: topic_markdown(topic, topics[topic]) for topic in sorted(topics)}


def demo_documents() -> list[Document]:
    """One Document per topic: source ``pydoc://<topic>``, title the topic, sections by heading."""
    documents = []
    for topic, markdown in demo_markdown().items():
        _, sections = parse_markdown(markdown)
        documents.append(
            Document(
                source=f"{SOURCE_SCHEME}{topic}",
                title=topic,
                sections=tuple(sections),
                content_hash=hashlib.sha256(markdown.encode()).hexdigest(),
            )
        )
    return documents


def write_demo_corpus(directory: Path) -> list[Path]:
    """Write every topic to ``<directory>/<topic>.md`` (UTF-8), creating the folder; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic, markdown in demo_markdown().items():
        path = directory / f"{topic}.md"
        path.write_bytes(markdown.encode())
        paths.append(path)
    return paths
