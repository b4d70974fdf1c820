"""What the RAG pipeline takes and returns; the REST, gRPC and CLI transports all speak these types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ragjet.rag.confidence import ConfidenceSignals
from ragjet.rag.tenants import DEFAULT_TENANT

DEFAULT_MAX_TOKENS = 256  # an answer's length when the client does not say


@dataclass(frozen=True, slots=True)
class AskOptions:
    collection: str
    top_k: int | None = None  # chunks put into the prompt; None = settings.retrieve.top_k
    filters: Mapping[str, object] | None = None  # source_prefix, title, page_min/page_max, metadata.<key>
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    deadline_s: float | None = None  # whole-request budget, seconds from arrival
    tenant: str = DEFAULT_TENANT  # whose collections; set by the transport from the caller's API key
    arrived_at: float | None = None  # time.monotonic() when the transport received it: the deadline counts from here
    use_cache: bool = True  # a repeated question may be answered from the answer cache (rag/answer_cache.py)


@dataclass(frozen=True, slots=True)
class Citation:
    number: int  # the [n] the prompt and the answer use
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    score: float
    text: str
    cited: bool = False  # the answer text refers to this source as [number]


@dataclass(slots=True)
class StageTimings:
    """Milliseconds per stage of one request; prefill is time to first token after the prompt was queued."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0
    prompt_ms: float = 0.0
    queue_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 3) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class Answer:
    request_id: str
    text: str
    citations: list[Citation]
    timings: StageTimings
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    finish_reason: str = "stop"
    confidence: float | None = None  # estimated chance that the answer is right (rag/confidence_model.py)
    confidence_signals: ConfidenceSignals | None = None  # what `confidence` was computed from
    needs_review: bool = False
    degraded: str | None = None  # why a fallback answered, e.g. "generator timeout: extractive answer"
    review_id: str | None = None  # the review-queue item this answer was stored as (or served from)
    from_cache: bool = False  # served from the answer cache: no retrieval, no generation


@dataclass(frozen=True, slots=True)
class AnswerStart:
    """First streamed event: retrieval is done, generation starts; citations are known already."""

    request_id: str
    citations: list[Citation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True, slots=True)
class AnswerDone:
    answer: Answer


AnswerEvent = AnswerStart | AnswerDelta | AnswerDone


def answer_events(answer: Answer) -> list[AnswerEvent]:
    """The stream of an answer that is ready at once (a reviewer's, a cached one, "not found")."""
    return [AnswerStart(answer.request_id, answer.citations), AnswerDelta(answer.text), AnswerDone(answer)]
