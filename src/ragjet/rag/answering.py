"""A request between retrieval and its answer: the prepared request, the checks on its options, and how the
answer is assembled from the generation (timings, citations marked, confidence, review flag)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ragjet.config import RagSettings, Settings
from ragjet.llm.sampling_params import SamplingParams
from ragjet.rag.answer_cache import CacheScope
from ragjet.rag.confidence import measure_signals
from ragjet.rag.confidence_model import load_confidence_model
from ragjet.rag.deadline import Deadline
from ragjet.rag.generation import GenerationTrace
from ragjet.rag.prompt import BuiltPrompt, mark_cited
from ragjet.rag.types import Answer, AskOptions, StageTimings


@dataclass(slots=True)
class PreparedRequest:
    """A request after retrieval and prompt assembly, ready for generation (or already answered: `ready`)."""

    request_id: str
    deadline: Deadline
    prompt: BuiltPrompt
    dense_scores: list[float]  # cosine scores of the chunks in the prompt, for confidence
    timings: StageTimings
    retrieval_fallback: str | None = None  # the backup index answered, and why
    ready: Answer | None = None  # from the answer cache, or "not found in the documents": nothing to generate
    cache_scope: CacheScope | None = None  # where the generated answer is cached (None: not cached)
    vector: np.ndarray | None = None  # the question's embedding


NO_PROMPT = BuiltPrompt("", 0, [], 0, False)  # of a request answered without generating


def answered(answer: Answer, deadline: Deadline) -> PreparedRequest:
    """A request answered before generation (from the answer cache, or "not found"), its total timed now."""
    answer.timings.total_ms = deadline.elapsed_ms()
    return PreparedRequest(answer.request_id, deadline, NO_PROMPT, [], answer.timings, ready=answer)


def validate_options(question: str, options: AskOptions, settings: Settings) -> int:
    """Check the options a client sends; returns the number of sources to put into the prompt."""
    if not question.strip():
        raise ValueError("question must not be empty")
    top_k = options.top_k if options.top_k is not None else settings.retrieve.top_k
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    max_model_len = settings.llm.max_model_len
    if not 1 <= options.max_tokens < max_model_len:
        raise ValueError(f"max_tokens must be between 1 and {max_model_len - 1}, got {options.max_tokens}")
    if options.deadline_s is not None and not options.deadline_s > 0:
        raise ValueError(f"deadline_s must be positive, got {options.deadline_s}")
    sampling_params(options)  # raises ValueError on bad sampling options
    return min(top_k, settings.rag.max_context_chunks)


def build_answer(
    question: str,
    request: PreparedRequest,
    trace: GenerationTrace,
    degraded: str | None,
    needs_review: bool,
    settings: RagSettings,
) -> Answer:
    timings = request.timings
    timings.queue_ms = trace.queue_ms
    timings.prefill_ms = trace.ttft_ms() - trace.queue_ms
    timings.decode_ms = trace.decode_ms()
    timings.total_ms = request.deadline.elapsed_ms()
    sources = [c.text for c in request.prompt.citations]
    signals = measure_signals(question, request.dense_scores, trace.text, sources, trace.mean_logprob,
                              trace.min_logprob)  # fmt: skip
    confidence = load_confidence_model(settings.confidence_model).probability(signals)
    return Answer(
        request_id=request.request_id,
        text=trace.text,
        citations=mark_cited(request.prompt.citations, trace.text),
        timings=timings,
        prompt_tokens=request.prompt.num_tokens,
        completion_tokens=trace.num_completion_tokens,
        cached_prompt_tokens=trace.num_cached_prompt_tokens,
        finish_reason=trace.finish_reason or "stop",
        confidence=confidence,
        confidence_signals=signals,
        needs_review=needs_review or confidence < settings.review_threshold,
        degraded=degraded,
    )


def sampling_params(options: AskOptions) -> SamplingParams:
    return SamplingParams(
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        seed=options.seed,
        stop=list(options.stop),
        logprobs=True,
    )
