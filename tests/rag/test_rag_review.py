"""The review queue in a real SQLite file: add, list, resolve, and serve the resolved answer again."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragjet.rag.review import ReviewItemNotFoundError, ReviewQueue, question_key
from ragjet.rag.types import Answer, Citation, StageTimings


def answer(text: str = "Etna is on Sicily [1].", confidence: float = 0.2) -> Answer:
    citation = Citation(1, "c1", "/docs/volcano.md", "Volcanoes", "", None, 0.4, "Mount Etna on Sicily ...")
    return Answer("r1", text, [citation], StageTimings(total_ms=12.5), confidence=confidence, needs_review=True)


def test_add_list_get_resolve_and_lookup(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    item_id = queue.add("t1", "geo", "Where is Etna?", answer())
    (pending,) = queue.list("t1", "pending")
    assert pending.id == item_id and pending.question == "Where is Etna?" and pending.confidence == 0.2
    assert pending.citations[0]["source"] == "/docs/volcano.md" and pending.scores["total_ms"] == 12.5
    assert queue.resolved_answer("t1", "geo", "Where is Etna?") is None  # pending items are not served
    resolved = queue.resolve("t1", item_id, "Mount Etna is on the east coast of Sicily [1].", reviewer="ana")
    assert resolved.status == "resolved" and resolved.reviewer == "ana" and resolved.resolved_at is not None
    assert queue.list("t1", "pending") == []
    served = queue.resolved_answer("t1", "geo", "  where is ETNA ")
    assert served is not None and served.resolution == "Mount Etna is on the east coast of Sicily [1]."
    assert queue.resolved_answer("t1", "other-collection", "Where is Etna?") is None


def test_empty_resolution_approves_the_answer_as_is(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    item_id = queue.add("t1", "geo", "Where is Etna?", answer("On Sicily."))
    assert queue.resolve("t1", item_id, "  ").resolution == "On Sicily."


def test_items_survive_a_reopen(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    item_id = queue.add("t1", "geo", "Where is Etna?", answer())
    queue.close()
    assert ReviewQueue(tmp_path / "review.db").get("t1", item_id).answer == "Etna is on Sicily [1]."


def test_unknown_item_is_a_clear_error(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    with pytest.raises(ReviewItemNotFoundError, match="nope"):
        queue.get("t1", "nope")
    with pytest.raises(ReviewItemNotFoundError):
        queue.resolve("t1", "nope", "x")


def test_question_key_ignores_case_spacing_and_punctuation() -> None:
    assert question_key("Where is  Etna?") == question_key("where is etna") == "where is etna"


def test_tenants_never_see_each_others_items(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    item_id = queue.add("t1", "geo", "Where is Etna?", answer())
    queue.resolve("t1", item_id, "Sicily.")
    assert queue.list("t2") == []
    with pytest.raises(ReviewItemNotFoundError):
        queue.get("t2", item_id)
    with pytest.raises(ReviewItemNotFoundError):
        queue.resolve("t2", item_id, "hijacked")
    assert queue.resolved_answer("t2", "geo", "Where is Etna?") is None
    assert queue.get("t1", item_id).resolution == "Sicily."


def test_concurrent_adds_are_group_committed_and_all_kept(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queue = ReviewQueue(tmp_path / "review.db")
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: queue.add("t1", "geo", f"Question {i}?", answer()), range(200)))
    assert len(set(ids)) == 200
    queue.close()
    reopened = ReviewQueue(tmp_path / "review.db")  # committed, not just buffered
    assert {item.id for item in reopened.list("t1", limit=500)} == set(ids)


def test_a_failed_group_commit_raises_in_every_add_it_carried(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review.db")
    queue._db.execute("DROP TABLE review_items")  # every insert now fails
    with pytest.raises(Exception, match="no such table"):
        queue.add("t1", "geo", "Where is Etna?", answer())
    assert not queue._db.in_transaction
