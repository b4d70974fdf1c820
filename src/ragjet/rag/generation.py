"""One streamed generation: the loop that honours the deadline and survives a failing generator, and its trace
(text, token counts, logprobs, queue/prefill/decode clocks, and why it ended)."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from ragjet.llm.backends import LLMBackend
from ragjet.llm.backends.base import Prompt
from ragjet.llm.engine.errors import EngineOverloadedError, PromptTooLongError
from ragjet.llm.sampling_params import SamplingParams
from ragjet.rag.deadline import Deadline
from ragjet.rag.types import Citation

log = logging.getLogger(__name__)

EXTRACTIVE_SOURCES = 2  # passages quoted when the generator cannot answer
EXTRACTIVE_CHARS = 600


@dataclass(slots=True)
class GenerationTrace:
    """Filled delta by delta while a generation streams; read once it has finished or was cut off.

    `queued_at` is when the prompt was handed to the backend; the first delta marks the end of prefill
    (time to first token), the last one the end of decode.
    """

    queued_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    pieces: list[str] = field(default_factory=list)
    num_completion_tokens: int = 0
    logprob_sum: float = 0.0
    num_logprobs: int = 0
    min_logprob: float | None = None  # of the least likely generated token
    finish_reason: str | None = None
    queue_ms: float = 0.0  # waiting in the engine before prefill began, when the backend reports it
    num_cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache
    error: str | None = None  # the generator failed with this; the answer falls back to extractive
    device_fallback: str | None = None  # a fallback device generated (part of) the text, and why
    stopped_repeating: bool = False  # cut off where the text began to repeat a sentence

    def record(self, text: str, num_tokens: int, logprobs: list[float] | None) -> None:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        self.pieces.append(text)
        self.num_completion_tokens += num_tokens
        for value in logprobs or ():
            if math.isfinite(value):
                self.logprob_sum += value
                self.num_logprobs += 1
                self.min_logprob = value if self.min_logprob is None else min(self.min_logprob, value)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def mean_logprob(self) -> float | None:
        return self.logprob_sum / self.num_logprobs if self.num_logprobs else None

    def ttft_ms(self) -> float:
        end = self.first_token_at if self.first_token_at is not None else time.perf_counter()
        return (end - self.queued_at) * 1e3

    def decode_ms(self) -> float:
        if self.first_token_at is None or self.last_token_at is None:
            return 0.0
        return (self.last_token_at - self.first_token_at) * 1e3


SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")  # a full stop, question or exclamation mark, or colon, then a space
# A repeated sentence this long is a loop, not a figure of speech or a repeated line of code ("if x is None:").
MIN_REPEATED_WORDS = 5


def repeats_a_sentence(text: str) -> bool:
    """Whether a finished sentence of the text (one of MIN_REPEATED_WORDS words or more) says an earlier one again.

    Small models fall into loops (measured with SmolLM2 on the demo corpus: "The function is defined by the
    function definition." four times in 64 tokens, "The answer to your question is:" seven times); every token after
    the first repeat is decode time spent on nothing the reader wants."""
    seen = set()
    for sentence in SENTENCE_END.split(text)[:-1]:  # the last piece may still be growing
        words = sentence.lower().split()
        if len(words) < MIN_REPEATED_WORDS:
            continue
        key = " ".join(words)
        if key in seen:
            return True
        seen.add(key)
    return False


async def stream_generation(
    backend: LLMBackend, prompt: Prompt, params: SamplingParams, deadline: Deadline, trace: GenerationTrace,
    stop_on_repetition: bool = True,
) -> AsyncGenerator[str, None]:  # fmt: skip
    """Text pieces as the backend streams them, until it finishes, the deadline passes, or it fails.

    A deadline ends the generation with finish_reason "timeout"; a failing generator (an engine error,
    a broken server connection, out of memory) ends it with `trace.error` set instead of raising, so
    the caller can still answer. Overload and an over-long prompt are the client's to see: they raise.
    With `stop_on_repetition`, a generation that repeats a whole sentence ends there (finish_reason "stop",
    `trace.stopped_repeating`), which aborts it in the engine.
    """
    try:
        async with aclosing(backend.stream(prompt, params)) as stream:
            while True:
                remaining = deadline.remaining_s()
                if remaining is not None and remaining <= 0:  # also when deltas are already buffered
                    trace.finish_reason = "timeout"
                    return
                try:
                    async with asyncio.timeout(remaining):
                        delta = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    trace.finish_reason = "timeout"
                    return
                trace.record(delta.text, delta.num_tokens, delta.logprobs)
                trace.num_cached_prompt_tokens = max(trace.num_cached_prompt_tokens, delta.num_cached_tokens)
                if delta.fallback is not None:
                    trace.device_fallback = delta.fallback
                if delta.finish_reason is not None:
                    trace.finish_reason = delta.finish_reason
                if delta.text:
                    yield delta.text
                if stop_on_repetition and delta.text and repeats_a_sentence(trace.text):
                    trace.finish_reason, trace.stopped_repeating = "stop", True
                    return
    except (EngineOverloadedError, PromptTooLongError):
        raise
    except Exception as exc:  # noqa: BLE001 (any generator failure degrades to an extractive answer)
        trace.error = f"{type(exc).__name__}: {exc}"
        trace.finish_reason = "error"
        log.warning("generation failed, answering extractively: %s", trace.error)


def fallback_reason(trace: GenerationTrace) -> str | None:
    """Why the generated text cannot stand as the answer: the generator failed, or timed out before a word."""
    if trace.error is not None:
        return f"generator error ({trace.error.split(':', 1)[0]}): extractive answer"
    if trace.finish_reason == "timeout" and not trace.text.strip():
        return "generator timeout: extractive answer"
    return None


def extractive_answer(citations: list[Citation]) -> str:
    """The best passages themselves, quoted with their citation numbers, when no generated answer exists."""
    parts = []
    for c in citations[:EXTRACTIVE_SOURCES]:
        text = " ".join(c.text.split())
        if len(text) > EXTRACTIVE_CHARS:
            text = text[:EXTRACTIVE_CHARS].rsplit(" ", 1)[0] + " …"
        parts.append(f"[{c.number}] {text}")
    return "\n\n".join(parts) if parts else "No answer could be generated and no sources matched."
