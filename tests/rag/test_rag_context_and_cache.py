"""Early exits before generation: the adaptive context (only chunks near the best score), the "not found in the
documents" answer, and the answer cache (repeated questions, invalidated by any change to the collection)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ragjet.config import RagSettings
from ragjet.rag.answer_cache import AnswerCache, CacheScope
from ragjet.rag.context import NOT_FOUND, NOT_FOUND_TEXT, choose_context
from ragjet.rag.types import Answer, AskOptions, StageTimings
from ragjet.retrieve import SearchHit
from support.tiny_models import COLLECTION


def hit(rank: int, dense: float | None) -> SearchHit:
    return SearchHit(rank, f"c{rank}", 1 / rank, dense, None, "doc.md", "Doc", "", None, f"chunk {rank}")


def test_adaptive_context_keeps_chunks_near_the_best_and_fixed_keeps_all() -> None:
    hits = [hit(1, 0.62), hit(2, 0.55), hit(3, 0.43), hit(4, 0.41), hit(5, 0.2)]
    assert [h.rank for h in choose_context(hits, RagSettings(context_score_gap=0.2)).hits] == [1, 2, 3]  # 0.42+
    assert [h.rank for h in choose_context(hits, RagSettings()).hits] == [1]  # default 0.03: none close enough
    close = [hit(1, 0.62), hit(2, 0.60), hit(3, 0.58)]
    assert [h.rank for h in choose_context(close, RagSettings()).hits] == [1, 2]  # 0.60 is within 0.03 of 0.62
    assert choose_context(hits, RagSettings(context="fixed")).hits == hits
    assert [h.rank for h in choose_context(hits, RagSettings(context_score_gap=0.0)).hits] == [1]


def test_nothing_relevant_is_not_found_and_keyword_only_hits_are_kept() -> None:
    weak = [hit(1, 0.15), hit(2, 0.1)]
    assert choose_context(weak, RagSettings()).not_found
    assert not choose_context(weak, RagSettings(not_found_below=-1)).not_found  # always generate
    assert not choose_context(weak, RagSettings(context="fixed")).not_found
    keyword_only = [hit(1, None), hit(2, None)]  # the vector index failed: BM25 answered
    assert choose_context(keyword_only, RagSettings()).hits == keyword_only


def answer(text: str = "Etna [1]", **fields: object) -> Answer:
    return Answer("r1", text, [], StageTimings(), **fields)  # type: ignore[arg-type]


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_cache_matches_exact_and_near_questions_in_the_same_scope_only() -> None:
    cache = AnswerCache(max_entries=2, similarity=0.97)
    scope = CacheScope.of(AskOptions(collection="facts"), version="v1")
    assert cache.store(scope, "Which volcano is on Sicily?", unit(1, 0, 0), answer())
    assert cache.lookup(scope, "  which VOLCANO is on sicily? ").text == "Etna [1]"  # type: ignore[union-attr]
    assert cache.lookup(scope, "Sicily's volcano?", unit(1, 0.1, 0)) is not None  # cosine 0.995
    assert cache.lookup(scope, "Bread?", unit(1, 1, 0)) is None  # cosine 0.71
    assert cache.lookup(CacheScope.of(AskOptions(collection="facts"), "v2"), "Which volcano is on Sicily?") is None
    assert cache.lookup(CacheScope.of(AskOptions(collection="facts", top_k=2), "v1"), "Which volcano is on Sicily?",
                        unit(1, 0, 0)) is None  # other options  # fmt: skip
    cache.store(scope, "a", unit(0, 1, 0), answer())
    cache.store(scope, "b", unit(0, 0, 1), answer())
    assert len(cache) == 2 and cache.lookup(scope, "Which volcano is on Sicily?") is None  # least recently used


def test_only_answers_worth_repeating_are_cached() -> None:
    cache = AnswerCache(max_entries=8, similarity=0.97)
    greedy = CacheScope.of(AskOptions(collection="facts"), "v1")
    sampled = CacheScope.of(AskOptions(collection="facts", temperature=0.7), "v1")
    seeded = CacheScope.of(AskOptions(collection="facts", temperature=0.7, seed=3), "v1")
    vector = unit(1, 0, 0)
    assert not cache.store(sampled, "q", vector, answer())  # another draw should differ
    assert cache.store(seeded, "q", vector, answer())
    assert not cache.store(greedy, "q", vector, answer(degraded="generator timeout: extractive answer"))
    assert not cache.store(greedy, "q", vector, answer(needs_review=True))
    assert not cache.store(greedy, "q", vector, answer(finish_reason="timeout"))
    assert not AnswerCache(max_entries=0, similarity=0.97).store(greedy, "q", vector, answer())


SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # the session's pipeline lives on that loop
QUESTION = "Which lava flows quickly?"


@SESSION_LOOP
async def test_a_repeated_question_is_answered_from_the_cache_until_the_collection_changes(
    pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pipeline, "answers", AnswerCache(max_entries=64, similarity=0.97))  # off for other tests
    # The tiny random model's answers are all low-confidence, and answers sent to review are never cached
    # (test_only_answers_worth_repeating_are_cached): here nothing goes to review.
    rag = pipeline.settings.rag.model_copy(update={"review_threshold": 0.0})
    monkeypatch.setattr(pipeline, "settings", pipeline.settings.model_copy(update={"rag": rag}))
    options = AskOptions(collection=COLLECTION, max_tokens=8)
    first = await pipeline.ask(QUESTION, options)
    again = await pipeline.ask(QUESTION, options)
    assert not first.from_cache and again.from_cache and again.text == first.text
    assert again.citations == first.citations and again.request_id != first.request_id
    assert again.timings.prefill_ms == 0 and again.completion_tokens == first.completion_tokens
    assert again.timings.embed_ms == 0  # the same words: answered before the question was even embedded
    near = await pipeline.ask(QUESTION.lower().replace("?", " ?"), options)  # other words: found by its embedding
    assert near.from_cache and near.text == first.text and near.timings.embed_ms > 0
    assert not (await pipeline.ask(QUESTION, dataclasses.replace(options, use_cache=False))).from_cache
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nPumice floats on water because it is full of gas bubbles.\n")
    await pipeline.ingest(COLLECTION, [note])  # a new collection version: the cached answer may be stale
    assert not (await pipeline.ask(QUESTION, options)).from_cache
    assert await pipeline.delete_document(COLLECTION, str(note.resolve()))


@SESSION_LOOP
async def test_an_unrelated_question_is_not_found_without_generating(pipeline) -> None:  # type: ignore[no-untyped-def]
    before = pipeline.engine_stats().prefix_cache_queries
    answer = await pipeline.ask("Who won the 2018 FIFA World Cup?", AskOptions(collection=COLLECTION, max_tokens=8))
    assert answer.text == NOT_FOUND_TEXT and answer.degraded == NOT_FOUND and answer.citations == []
    assert answer.completion_tokens == 0 and pipeline.engine_stats().prefix_cache_queries == before
    assert answer.timings.total_ms < 5_000
