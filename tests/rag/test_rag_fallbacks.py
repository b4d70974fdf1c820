"""Faults injected into a real pipeline: the generator raises, hangs, or runs out of memory. Each time the
user still gets an answer (the best passages, marked degraded and flagged for review), and the next
request is answered normally."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
import torch

from support.stack import require_layers

require_layers()

from ragjet.llm.backends import TextDelta
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.types import AskOptions
from support.tiny_models import COLLECTION

pytestmark = pytest.mark.asyncio(loop_scope="session")
QUESTION = "Which lava flows quickly?"


def options(**overrides: object) -> AskOptions:
    return AskOptions(**{"collection": COLLECTION, "top_k": 2, "max_tokens": 8, **overrides})  # type: ignore[arg-type]


async def breaks_after_one_token(prompt: object, params: object) -> AsyncGenerator[TextDelta, None]:
    yield TextDelta("Basalt", 1)
    raise RuntimeError("engine step failed: device lost")


async def hangs(prompt: object, params: object) -> AsyncGenerator[TextDelta, None]:
    await asyncio.Event().wait()
    yield TextDelta("never", 1)


async def assert_next_request_is_normal(pipeline: RagPipeline) -> None:
    answer = await pipeline.ask(QUESTION, options())
    assert answer.degraded is None and answer.completion_tokens >= 1


async def test_generator_error_gives_an_extractive_answer(pipeline: RagPipeline, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pipeline._backend, "stream", breaks_after_one_token)
    answer = await pipeline.ask(QUESTION, options())
    assert answer.degraded == "generator error (RuntimeError): extractive answer"
    assert answer.text.startswith("Basalt") and "[1] " in answer.text and "lava" in answer.text.lower()
    assert answer.finish_reason == "error" and answer.needs_review and answer.review_id is not None
    item = pipeline.review_queue().get("default", answer.review_id)
    assert item.question == QUESTION and item.answer == answer.text
    monkeypatch.undo()
    await assert_next_request_is_normal(pipeline)


async def test_hung_generator_is_cut_off_at_the_deadline(pipeline: RagPipeline, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pipeline._backend, "stream", hangs)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await pipeline.ask(QUESTION, options(deadline_s=1.5))
    assert loop.time() - started < 10  # bounded by the deadline, not by the hung generator
    assert answer.degraded == "generator timeout: extractive answer" and answer.finish_reason == "timeout"
    assert answer.text.startswith("[1] ") and answer.needs_review
    monkeypatch.undo()
    await assert_next_request_is_normal(pipeline)


async def test_out_of_memory_in_the_model_forward(pipeline: RagPipeline, monkeypatch: pytest.MonkeyPatch):
    model = pipeline._backend.engine.engine.model_runner.model

    def out_of_memory(*args: object, **kwargs: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", out_of_memory)
    answer = await pipeline.ask(QUESTION, options())
    assert answer.degraded is not None and answer.degraded.startswith("generator error (OutOfMemoryError)")
    assert "[1] " in answer.text
    monkeypatch.undo()
    await assert_next_request_is_normal(pipeline)
    assert pipeline.engine_stats().num_running == 0


async def test_a_failing_vector_index_is_answered_by_bm25(pipeline: RagPipeline, monkeypatch: pytest.MonkeyPatch):
    collection = pipeline.collections().retriever(COLLECTION).collection

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("vectors.index: I/O error")

    monkeypatch.setattr(collection.index, "search", broken)
    answer = await pipeline.ask(QUESTION, options())
    assert answer.degraded is not None and answer.degraded.startswith("index fallback: flat index failed (OSError")
    assert answer.citations and answer.completion_tokens >= 1 and answer.needs_review
    monkeypatch.undo()
    await assert_next_request_is_normal(pipeline)
