"""Optional OpenTelemetry spans, one per pipeline stage of an answer (off by default).

Spans are built from the answer's `StageTimings` once it is done, so tracing adds no clock of its own
and costs nothing on the hot path. The stages run one after another, so each span starts where the
previous one ended; `total` is the parent. With tracing on and no collector configured, spans go to
the exporter named by the standard OTEL_* environment variables (or the console).
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ragjet.obs.answer import ObservedAnswer

SEQUENTIAL_STAGES = ("embed", "search", "rerank", "prompt", "queue", "prefill", "decode")


def enable_tracing(exporter: SpanExporter | None = None) -> TracerProvider:
    """Install a tracer provider exporting to `exporter` (console when None) and return it."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter or ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def record_answer_spans(answer: ObservedAnswer, collection: str, tracer: trace.Tracer | None = None) -> None:
    """A `rag.answer` span covering the request, with a child span per non-empty stage."""
    tracer = tracer or trace.get_tracer("ragjet")
    t = answer.timings
    end_ns = time.time_ns()
    start_ns = end_ns - int(t.total_ms * 1e6)
    attributes: dict[str, str | int] = {
        "ragjet.request_id": answer.request_id,
        "ragjet.collection": collection,
        "ragjet.prompt_tokens": answer.prompt_tokens,
        "ragjet.completion_tokens": answer.completion_tokens,
        "ragjet.finish_reason": answer.finish_reason,
    }
    root = tracer.start_span("rag.answer", start_time=start_ns, attributes=attributes)
    context = trace.set_span_in_context(root)
    cursor = start_ns
    for stage in SEQUENTIAL_STAGES:
        duration_ns = int(getattr(t, f"{stage}_ms") * 1e6)
        if duration_ns <= 0:
            continue
        span = tracer.start_span(f"rag.{stage}", context=context, start_time=cursor)
        cursor += duration_ns
        span.end(end_time=cursor)
    root.end(end_time=end_ns)
