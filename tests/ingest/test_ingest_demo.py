"""The pydoc demo corpus: documents in memory and the same corpus written to disk and loaded back."""

from __future__ import annotations

import hashlib
from pathlib import Path
from pydoc_data.topics import topics

from tokenizers import Tokenizer

from ragjet.ingest.chunker import Chunker
from ragjet.ingest.demo import demo_documents, topic_markdown, write_demo_corpus
from ragjet.ingest.loaders import load_documents


def test_one_document_per_topic_with_sections() -> None:
    docs = demo_documents()
    assert [d.title for d in docs] == sorted(topics)
    assert all(d.source == f"pydoc://{d.title}" for d in docs)
    by_title = {d.title: d for d in docs}
    assignment = [s.heading for s in by_title["assignment"].sections]
    assert assignment == [
        "Assignment statements",
        "Assignment statements > Augmented assignment statements",
        "Assignment statements > Annotated assignment statements",
    ]
    assert by_title["if"].sections[0].text.startswith('The "if" statement is used for conditional execution')
    assert all("\n*****" not in d.text and "\n~~~~~" not in d.text for d in docs)  # underlines consumed
    assert sum(len(d.sections) for d in docs) > 2 * len(docs)


def test_no_topic_text_is_lost() -> None:
    for doc in demo_documents():
        headings = {part for s in doc.sections for part in s.heading.split(" > ")}
        words = set(doc.text.split()) | {w for h in headings for w in h.split()}
        assert set(topics[doc.title].split()) - words <= {"*", "=", "-", "~"} | _underlines(topics[doc.title])


def _underlines(text: str) -> set[str]:
    return {line for line in text.split("\n") if line and len(set(line)) == 1 and line[0] in "*=-~"}


def test_heading_levels_follow_first_use_of_each_underline() -> None:
    text = "Title\n*****\n\nintro\n\nSub\n===\n\nbody\n\nSubsub\n------\n\ndeep\n\nSub two\n=======\n\nmore\n"
    assert topic_markdown("t", text) == (
        "---\ntitle: t\n---\n# Title\n\nintro\n\n## Sub\n\nbody\n\n### Subsub\n\ndeep\n\n## Sub two\n\nmore\n"
    )


def test_written_corpus_loads_back_identically(tmp_path: Path) -> None:
    paths = write_demo_corpus(tmp_path / "corpus")
    assert len(paths) == len(topics) and all(p.suffix == ".md" and p.is_file() for p in paths)
    loaded = {d.title: d for d in load_documents([tmp_path / "corpus"])}
    for doc in demo_documents():
        twin = loaded[doc.title]
        assert (twin.sections, twin.content_hash) == (doc.sections, doc.content_hash)
        assert twin.content_hash == hashlib.sha256((tmp_path / "corpus" / f"{doc.title}.md").read_bytes()).hexdigest()


def test_demo_corpus_chunks_within_budget(tokenizer: Tokenizer) -> None:
    chunker = Chunker(tokenizer, max_tokens=256, overlap_tokens=32)
    chunks = [c for doc in demo_documents() for c in chunker.split(doc)]
    assert len(chunks) > len(topics)
    assert max(c.num_tokens for c in chunks) <= 254
    assert len({c.id for c in chunks}) == len(chunks)
