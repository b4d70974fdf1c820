"""The whole pipeline on a small real corpus: real MiniLM embedder, real store, a tiny random-weight Llama."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest
import torch

from support.stack import require_layers

require_layers()

from ragjet.rag.deadline import DeadlineExceededError
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.types import AnswerDelta, AnswerDone, AnswerStart, AskOptions
from ragjet.store import CollectionNotFoundError
from support.tiny_models import COLLECTION

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "Who designed the Fresnel lens for lighthouses?"


def options(**overrides: object) -> AskOptions:
    return AskOptions(**{"collection": COLLECTION, "top_k": 3, "max_tokens": 12, **overrides})  # type: ignore[arg-type]


async def test_answer_cites_the_right_chunks_with_timings(pipeline: RagPipeline):
    answer = await pipeline.ask(QUESTION, options())
    assert answer.text and answer.completion_tokens >= 1
    assert 1 <= len(answer.citations) <= 3
    assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert answer.citations[0].source.endswith("lighthouse.md") and "Fresnel" in answer.citations[0].text
    t = answer.timings
    assert min(t.embed_ms, t.search_ms, t.prompt_ms, t.prefill_ms, t.total_ms) > 0
    assert t.total_ms >= t.embed_ms + t.search_ms + t.prompt_ms + t.prefill_ms + t.decode_ms
    assert 0 < answer.prompt_tokens <= pipeline.settings.llm.max_model_len - 12
    assert answer.confidence is not None and 0 <= answer.confidence <= 1
    assert answer.needs_review == (answer.confidence < pipeline.settings.rag.review_threshold)


async def test_search_ranks_the_matching_chunk_first(pipeline: RagPipeline):
    hits = await pipeline.search("active volcano on Sicily", COLLECTION, top_k=2)
    assert hits[0].source.endswith("volcano.md") and "Etna" in hits[0].text


async def test_stream_events_come_in_order(pipeline: RagPipeline):
    events = [e async for e in pipeline.ask_stream(QUESTION, options())]
    assert isinstance(events[0], AnswerStart) and isinstance(events[-1], AnswerDone)
    assert all(isinstance(e, AnswerDelta) for e in events[1:-1]) and len(events) > 2
    answer = events[-1].answer
    assert "".join(e.text for e in events[1:-1]) == answer.text
    assert events[0].request_id == answer.request_id
    assert [c.chunk_id for c in events[0].citations] == [c.chunk_id for c in answer.citations]


async def test_concurrent_questions_share_embedding_batches(pipeline: RagPipeline):
    questions = [f"{QUESTION} ({i})" for i in range(8)]
    answers = await asyncio.gather(*(pipeline.ask(q, options()) for q in questions))
    assert all(a.text and a.citations for a in answers)
    assert len({a.request_id for a in answers}) == 8
    assert pipeline.batcher_stats().max_batch_size > 1


async def test_leaving_the_stream_cancels_generation(pipeline: RagPipeline):
    free_before = pipeline.engine_stats().num_free_blocks
    async with aclosing(pipeline.ask_stream(QUESTION, options(max_tokens=400))) as events:
        async for event in events:
            if isinstance(event, AnswerDelta):
                break
    for _ in range(100):  # the engine thread frees the blocks on its next step
        if pipeline.engine_stats().num_free_blocks == free_before:
            break
        await asyncio.sleep(0.02)
    stats = pipeline.engine_stats()
    assert stats.num_free_blocks == free_before and stats.num_running == 0


async def test_unknown_collection_is_not_found(pipeline: RagPipeline):
    with pytest.raises(CollectionNotFoundError, match="nope"):
        await pipeline.ask(QUESTION, options(collection="nope"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"top_k": 0}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"deadline_s": 0.0}, "deadline_s"),
    ],
)
async def test_bad_options_are_value_errors(pipeline: RagPipeline, overrides: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        await pipeline.ask(QUESTION, options(**overrides))


async def test_empty_question_is_a_value_error(pipeline: RagPipeline):
    with pytest.raises(ValueError, match="question"):
        await pipeline.ask("  ", options())


async def test_deadline_before_generation_is_a_clear_timeout(pipeline: RagPipeline):
    with pytest.raises(DeadlineExceededError, match="deadline of 1e-06s passed"):
        await pipeline.ask(QUESTION, options(deadline_s=1e-6))


async def test_deadline_during_generation_returns_the_answer_so_far(pipeline: RagPipeline):
    deadline_s = 1.5  # well past retrieval (tens of ms), well before 400 tokens are decoded
    async with aclosing(pipeline.ask_stream(QUESTION, options(max_tokens=400, deadline_s=deadline_s))) as events:
        start = await anext(events)
        assert isinstance(start, AnswerStart)
        await asyncio.sleep(deadline_s)  # the deadline passes while the answer streams
        rest = [e async for e in events]
    answer = rest[-1].answer
    assert answer.finish_reason == "timeout"
    assert answer.text == "".join(e.text for e in rest if isinstance(e, AnswerDelta))


async def test_helper_threads_run_torch_single_threaded_beside_an_engine_on_the_cpu(pipeline: RagPipeline):
    # The engine's step thread needs the cores' only OpenMP team (ragjet/cpu_threads.py).
    assert await asyncio.to_thread(torch.get_num_threads) == 1
    assert pipeline._batcher is not None and pipeline._batcher.single_threaded
