"""Tracing spans come from an answer's stage timings: one parent, one child per stage, in order."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragjet.obs.tracing import record_answer_spans
from ragjet.rag.types import Answer, StageTimings


def test_one_span_per_stage_under_the_answer_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    timings = StageTimings(embed_ms=2, search_ms=1, prompt_ms=1, prefill_ms=30, decode_ms=60, total_ms=95)
    answer = Answer("req-1", "text", [], timings, prompt_tokens=10, completion_tokens=5)
    record_answer_spans(answer, "facts", provider.get_tracer("test"))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"rag.answer", "rag.embed", "rag.search", "rag.prompt", "rag.prefill", "rag.decode"}
    root = spans["rag.answer"]
    assert root.attributes["ragjet.request_id"] == "req-1" and root.attributes["ragjet.collection"] == "facts"
    for name in ("rag.embed", "rag.decode"):
        assert spans[name].parent.span_id == root.context.span_id
    assert spans["rag.decode"].end_time - spans["rag.decode"].start_time == 60_000_000
    assert spans["rag.embed"].end_time <= spans["rag.search"].start_time <= spans["rag.prefill"].start_time
