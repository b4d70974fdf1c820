"""Chunker contracts on the real MiniLM tokenizer: budget, no text lost, structure, overlap, stable ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from ragjet.config import ChunkSettings
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.document import Chunk, Document, Section, chunk_id

SENTENCES = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(200)]


def _doc(*sections: Section, source: str = "/docs/a.txt") -> Document:
    return Document(source=source, title="a", sections=sections, content_hash="0" * 64)


def _no_space(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


def assert_covers(section_text: str, chunks: list[Chunk]) -> None:
    """Chunks, in order and allowing overlap, tile every non-whitespace character of the section."""
    target, covered = _no_space(section_text), 0
    for chunk in chunks:
        piece = _no_space(chunk.text)
        starts = [j for j in range(max(0, covered - len(piece)), covered + 1) if target.startswith(piece, j)]
        assert starts, f"chunk {chunk.ordinal} leaves a gap or reorders text: {chunk.text[:80]!r}"
        covered = max(covered, starts[-1] + len(piece))
    assert covered == len(target), "text at the end of the section was lost"


def assert_within_budget(chunks: list[Chunk], tokenizer: Tokenizer, max_tokens: int) -> None:
    """Slow reference: re-encode every chunk *with* special tokens and no truncation."""
    reference = Tokenizer.from_str(tokenizer.to_str())
    reference.no_truncation()
    reference.no_padding()
    for chunk in chunks:
        assert chunk.num_tokens <= max_tokens - 2
        assert chunk.num_tokens == len(reference.encode(chunk.text, add_special_tokens=False).ids)
        assert len(reference.encode(chunk.text).ids) <= max_tokens


_LETTERS = [*"abcdefghijklmnop", "é", "中", "文", "😀", "-", "'", "1", "."]
_WORD = st.text(alphabet=st.sampled_from(_LETTERS), min_size=1, max_size=25)
_SEPARATOR = st.sampled_from([" ", " ", " ", " ", ". ", "! ", "\n", "\n\n", "。", ", ", "\t"])
_PROSE = st.lists(st.tuples(_WORD, _SEPARATOR), min_size=1, max_size=250).map(
    lambda parts: "".join(w + s for w, s in parts)
)
_TEXT = st.one_of(_PROSE, st.text(min_size=1, max_size=400), st.text(alphabet="ab-", min_size=100, max_size=2000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(_TEXT, min_size=1, max_size=3),
    max_tokens=st.integers(min_value=16, max_value=96),
    overlap_fraction=st.floats(min_value=0, max_value=0.6),
)
def test_property_budget_and_no_text_lost(
    tokenizer: Tokenizer, texts: list[str], max_tokens: int, overlap_fraction: float
) -> None:
    chunker = Chunker(
        tokenizer, max_tokens=max_tokens, overlap_tokens=int(max_tokens * overlap_fraction), min_section_tokens=0
    )
    sections = tuple(Section(text, heading=f"H{i}", page=i + 1) for i, text in enumerate(texts))
    chunks = chunker.split(_doc(*sections))
    assert_within_budget(chunks, tokenizer, max_tokens)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for section in sections:
        own = [c for c in chunks if c.heading == section.heading]
        assert all(c.page == section.page and c.text in section.text for c in own)
        if section.text.strip():
            assert_covers(section.text, own)
        else:
            assert not own


def test_every_word_appears_and_paragraphs_that_fit_stay_whole(tokenizer: Tokenizer) -> None:
    paragraphs = [" ".join(SENTENCES[i : i + 1 + i % 9]) for i in range(0, 120, 6)]
    text = "\n\n".join(paragraphs)
    chunks = Chunker(tokenizer, max_tokens=128, overlap_tokens=16).split(_doc(Section(text)))
    assert len(chunks) > 3
    joined = " ".join(c.text for c in chunks)
    assert set(text.split()) <= set(joined.split())
    for paragraph in paragraphs:
        assert any(paragraph in c.text for c in chunks), "a paragraph that fits the budget was split"
    assert_covers(text, chunks)


def test_small_paragraphs_are_packed_up_to_the_budget(tokenizer: Tokenizer) -> None:
    text = "\n\n".join(f"Note {i}." for i in range(300))
    chunker = Chunker(tokenizer, max_tokens=64, overlap_tokens=0)
    chunks = chunker.split(_doc(Section(text)))
    total = sum(chunker.count_tokens([f"Note {i}." for i in range(300)]))
    assert len(chunks) == -(-total // 62)  # every chunk but the last is full: 62 = 64 - [CLS] - [SEP]
    assert all(c.num_tokens > 62 - 4 for c in chunks[:-1])


def test_overlap_repeats_whole_sentences_of_the_previous_chunk(tokenizer: Tokenizer) -> None:
    text = " ".join(SENTENCES[:60])  # one long paragraph: splits happen mid-paragraph
    chunker = Chunker(tokenizer, max_tokens=96, overlap_tokens=32)
    chunks = chunker.split(_doc(Section(text)))
    assert len(chunks) >= 5
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        first_sentence = re.match(r".*?\.", chunk.text).group(0)  # type: ignore[union-attr]
        assert first_sentence in SENTENCES, "overlap should start at a sentence boundary"
        overlap_text = previous.text[previous.text.rindex(first_sentence) :]
        assert chunk.text.startswith(overlap_text)
        assert 0 < chunker.count_tokens([overlap_text])[0] <= 32


def test_overlap_falls_back_to_a_word_aligned_tail_for_long_sentences(tokenizer: Tokenizer) -> None:
    long_sentence = " ".join(f"word{i}" for i in range(400)) + "."
    chunks = Chunker(tokenizer, max_tokens=64, overlap_tokens=10).split(_doc(Section(long_sentence)))
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        head = chunk.text.split()[0]
        assert head in previous.text.split(), "overlap should start at a whole word of the previous chunk"
        tail_words = previous.text.split()[-3:]
        assert all(w in chunk.text.split() for w in tail_words)


def test_zero_overlap_means_disjoint_chunks(tokenizer: Tokenizer) -> None:
    text = " ".join(SENTENCES[:40])
    chunks = Chunker(tokenizer, max_tokens=64, overlap_tokens=0).split(_doc(Section(text)))
    assert " ".join(c.text for c in chunks) == text


def test_headings_and_pages_are_kept_and_sections_never_merged(tokenizer: Tokenizer) -> None:
    sections = (
        Section(" ".join(SENTENCES[:30]), heading="Install", page=1),
        Section(" ".join(SENTENCES[30:40]), heading="Install > From source", page=1),
        Section(" ".join(SENTENCES[40:45]), heading="Install > From source", page=2),
    )
    chunks = Chunker(tokenizer, max_tokens=128, overlap_tokens=16).split(_doc(*sections))
    for section in sections:
        own = [c for c in chunks if (c.heading, c.page) == (section.heading, section.page)]
        assert own and all(c.text in section.text for c in own)
        assert_covers(section.text, own)
    keys = [(c.heading, c.page) for c in chunks]
    assert keys == sorted(keys, key=[(s.heading, s.page) for s in sections].index)


def test_tiny_sections_on_one_page_are_joined(tokenizer: Tokenizer) -> None:
    sections = (
        Section("Two ways to install.", heading="Install", page=None),
        Section("Use pip.", heading="Install > From PyPI", page=None),
        Section(" ".join(SENTENCES[:20]), heading="Install > From source", page=None),
        Section("Tiny on page 2.", heading="Other", page=2),
        Section("Tiny on page 3.", heading="Other", page=3),
    )
    chunks = Chunker(tokenizer, max_tokens=64, overlap_tokens=8).split(_doc(*sections))
    assert chunks[0].text == "Two ways to install.\n\nUse pip."
    assert chunks[0].heading == "Install"
    assert chunks[1].heading == "Install > From source"
    assert [(c.text, c.page) for c in chunks[-2:]] == [("Tiny on page 2.", 2), ("Tiny on page 3.", 3)]


def test_ids_are_stable_and_deterministic(tokenizer: Tokenizer) -> None:
    doc = _doc(Section(" ".join(SENTENCES[:50]), "A"), Section(" ".join(SENTENCES[50:80]), "B"))
    first = Chunker(tokenizer, max_tokens=64, overlap_tokens=16).split(doc)
    again = Chunker(tokenizer, max_tokens=64, overlap_tokens=16).split(doc)
    assert first == again
    assert len({c.id for c in first}) == len(first)
    assert all(c.id == chunk_id(doc.source, c.ordinal, c.text) and c.source == doc.source for c in first)
    edited = _doc(doc.sections[0], Section(" ".join(SENTENCES[50:70]), "B"))
    reused = Chunker(tokenizer, max_tokens=64, overlap_tokens=16).split(edited)
    num_a = sum(c.heading == "A" for c in first)
    assert [c.id for c in reused[:num_a]] == [c.id for c in first[:num_a]]  # an edit later keeps earlier ids


@pytest.mark.parametrize(
    "text",
    [
        "x" * 10_000,  # one word longer than WordPiece's 100-char limit: a single [UNK]
        "ab-" * 3_400,  # no spaces but punctuation: ~10k tokens, cut at token boundaries
        "\n\n".join("ok." for _ in range(3_000)),  # many tiny paragraphs
        "这是一个没有空格的很长的中文句子" * 80 + "。" + "日本語の文章です。" * 60,
        "emoji 😀🎉🔥 mixed with café naïve Ünïcödé " * 150,
        "\u200b\u0300\x07 strange \ufeff controls \u202e reversed " * 100,
    ],
    ids=["long-word", "long-token-run", "tiny-paragraphs", "cjk", "emoji", "odd-unicode"],
)
def test_pathological_inputs(tokenizer: Tokenizer, text: str) -> None:
    chunks = Chunker(tokenizer, max_tokens=64, overlap_tokens=16).split(_doc(Section(text)))
    assert chunks
    assert_within_budget(chunks, tokenizer, 64)
    assert_covers(text, chunks)


def test_empty_document_sections_give_no_chunks(tokenizer: Tokenizer) -> None:
    assert Chunker(tokenizer).split(_doc(Section("  \n\n "), Section(""))) == []


def test_settings_and_validation(tokenizer: Tokenizer) -> None:
    chunker = Chunker.from_settings(tokenizer, ChunkSettings(max_tokens=128, overlap_tokens=20))
    assert (chunker.max_tokens, chunker.budget, chunker.overlap_tokens) == (128, 126, 20)
    with pytest.raises(ValueError, match="fewer than 8 content tokens"):
        Chunker(tokenizer, max_tokens=9)
    with pytest.raises(ValueError, match="overlap_tokens=64"):
        Chunker(tokenizer, max_tokens=64, overlap_tokens=64)
    assert tokenizer.truncation is not None, "the caller's tokenizer must not be modified"
