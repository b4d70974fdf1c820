"""Prompt builder: exact token budget with a real tokenizer, dedup, numbering, ordering, truncation."""

from __future__ import annotations

import pytest

from ragjet.rag.prompt import (
    MIN_TRUNCATED_WORDS,
    TRUNCATION_MARK,
    PromptBudgetError,
    PromptBuilder,
    cited_numbers,
    dedupe,
    mark_cited,
)
from support.hits import Hit

SYSTEM = "Answer only from the numbered sources and cite them as [n]."
QUESTION = "Who designed the Fresnel lens?"


def sentence_hits(n: int, words: int = 60) -> list[Hit]:
    """Distinct chunks (different vocab per chunk) with falling scores."""
    return [
        Hit(f"c{i}", " ".join(f"lighthouse{i} sailor{j % 7} harbour{i}" for j in range(words // 3)), 1.0 - i / 100)
        for i in range(n)
    ]


def builder(tokenizer, max_model_len: int = 2048) -> PromptBuilder:
    return PromptBuilder(tokenizer, SYSTEM, max_model_len=max_model_len)


def test_numbered_in_score_order_with_headers(chat_tokenizer):
    hits = [
        Hit("a", "Etna is on Sicily.", 0.2, source="volcano.md", title="Volcanoes", heading="Lava"),
        Hit("b", "Fresnel designed the lens in 1822.", 0.9, source="lh.pdf", title="Lighthouses", page=3),
    ]
    prompt = builder(chat_tokenizer).build(QUESTION, hits, max_tokens=64, max_chunks=8)
    assert [(c.number, c.chunk_id) for c in prompt.citations] == [(1, "b"), (2, "a")]
    assert "[1] lh.pdf, page 3 — Lighthouses\nFresnel designed the lens in 1822." in prompt.text
    assert "[2] volcano.md — Volcanoes > Lava\nEtna is on Sicily." in prompt.text
    assert prompt.text.index("[1]") < prompt.text.index("[2]") < prompt.text.index(QUESTION)
    assert SYSTEM in prompt.text and prompt.text.endswith("<|im_start|>assistant\n")
    assert prompt.num_tokens == chat_tokenizer.count_tokens(prompt.text)
    assert prompt.num_dropped == 0 and not prompt.is_truncated


def test_dedupe_drops_repeated_ids_and_near_identical_text():
    text = "Sourdough rises because wild yeast and lactic acid bacteria ferment the dough every day."
    hits = [
        Hit("x", text, 0.5),
        Hit("x", text, 0.4),  # same chunk returned twice
        Hit("y", text.upper().replace(".", " !"), 0.7),  # same words, other case and punctuation
        Hit("z", "Etna erupts often.", 0.1),
    ]
    assert [h.chunk_id for h in dedupe(hits)] == ["y", "z"]


def test_dedupe_keeps_chunks_that_merely_overlap():
    a = " ".join(f"w{i}" for i in range(40))
    b = " ".join(f"w{i}" for i in range(20, 60))  # half the words shared: overlapping chunks, not duplicates
    assert len(dedupe([Hit("a", a, 0.9), Hit("b", b, 0.8)])) == 2


@pytest.mark.parametrize("max_tokens", [64, 300, 777, 1200])
def test_budget_is_respected_exactly_and_tightly(chat_tokenizer, max_tokens):
    b = builder(chat_tokenizer, max_model_len=2048)
    hits = sentence_hits(8)
    prompt = b.build(QUESTION, hits, max_tokens=max_tokens, max_chunks=8)
    budget = 2048 - max_tokens
    assert prompt.num_tokens == chat_tokenizer.count_tokens(prompt.text) <= budget
    numbers = [c.number for c in prompt.citations]
    assert numbers == list(range(1, len(numbers) + 1))
    assert [c.chunk_id for c in prompt.citations] == [h.chunk_id for h in hits[: len(numbers)]]
    assert prompt.num_dropped == len(hits) - len(numbers)
    if prompt.num_dropped:
        # Tight: the next whole source would not have fitted.
        blocks = prompt.text.split("Sources:\n\n", 1)[1].split("\n\nQuestion:", 1)[0].split("\n\n")
        next_hit = hits[len(numbers) - (1 if prompt.is_truncated else 0)]
        whole = f"[{len(blocks) if prompt.is_truncated else len(blocks) + 1}] doc.md — Doc\n{next_hit.text}"
        longer = [*blocks[: len(blocks) - (1 if prompt.is_truncated else 0)], whole]
        assert chat_tokenizer.count_tokens(b.render(QUESTION, longer)) > budget


def test_truncates_the_last_source_at_a_word_boundary(chat_tokenizer):
    b = builder(chat_tokenizer, max_model_len=2048)
    hits = sentence_hits(3, words=600)
    full = b.build(QUESTION, hits[:1], max_tokens=0, max_chunks=8)
    # Leave room for the first source whole and roughly half of the second.
    budget = full.num_tokens + (full.num_tokens - 60) // 2
    prompt = b.build(QUESTION, hits[:2], max_tokens=2048 - budget, max_chunks=8)
    assert prompt.is_truncated and len(prompt.citations) == 2 and prompt.num_dropped == 0
    body = prompt.text.split("[2] doc.md — Doc\n", 1)[1].split(TRUNCATION_MARK, 1)[0]
    assert hits[1].text.startswith(body) and hits[1].text[len(body)] == " "
    assert len(body.split()) >= MIN_TRUNCATED_WORDS
    assert prompt.num_tokens <= budget


def test_too_small_a_remnant_is_dropped_not_truncated(chat_tokenizer):
    b = builder(chat_tokenizer)
    hits = sentence_hits(2, words=600)
    one = b.build(QUESTION, hits[:1], max_tokens=0, max_chunks=8)
    prompt = b.build(QUESTION, hits, max_tokens=2048 - one.num_tokens - 5, max_chunks=8)
    assert [c.chunk_id for c in prompt.citations] == ["c0"]
    assert prompt.num_dropped == 1 and not prompt.is_truncated


def test_max_chunks_caps_the_sources(chat_tokenizer):
    prompt = builder(chat_tokenizer).build(QUESTION, sentence_hits(6, words=9), max_tokens=64, max_chunks=3)
    assert len(prompt.citations) == 3 and prompt.num_dropped == 0


def test_no_hits_still_builds_a_prompt(chat_tokenizer):
    prompt = builder(chat_tokenizer).build(QUESTION, [], max_tokens=64, max_chunks=8)
    assert prompt.citations == [] and "(no sources found)" in prompt.text


def test_question_beyond_the_budget_is_a_clear_error(chat_tokenizer):
    with pytest.raises(PromptBudgetError, match="max_tokens 2000"):
        builder(chat_tokenizer).build("why " * 200, sentence_hits(1), max_tokens=2000, max_chunks=8)


def test_cited_numbers_and_marking(chat_tokenizer):
    assert cited_numbers("A [1], B [2][3] and C [4, 6; 7]. Not [x] or [ ].") == {1, 2, 3, 4, 6, 7}
    prompt = builder(chat_tokenizer).build(QUESTION, sentence_hits(3, words=9), max_tokens=64, max_chunks=8)
    marked = mark_cited(prompt.citations, "It was Fresnel [2].")
    assert [c.cited for c in marked] == [False, True, False]
