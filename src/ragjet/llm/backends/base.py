"""The one interface every text generator sits behind: streamed deltas, a chat template, a token count.

`native` runs our engine in-process; `openai` talks to any OpenAI-compatible server. Callers (the RAG
pipeline, the CLI, the serving layer) never know which one they hold.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragjet.llm.segments import PromptSegments

if TYPE_CHECKING:
    from ragjet.llm.engine.outputs import EngineStats
    from ragjet.llm.sampling_params import SamplingParams

Messages = list[dict[str, str]]  # [{"role": "system" | "user" | "assistant", "content": "..."}]
# Prompt text, chat messages, or prompt text in pieces that mark retrieved chunks (`PromptSegments`: a backend
# that cannot reuse chunks' K/V sends its text).
Prompt = str | Messages | PromptSegments


class BackendError(RuntimeError):
    """A generator failed: the server refused the request, broke off, or did not answer in time.

    `status` is the HTTP status when a server answered (None for connection errors and timeouts).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New output of one request since the previous delta."""

    text: str
    num_tokens: int  # tokens behind `text` (0 on a final delta that only carries finish_reason)
    finish_reason: str | None = None  # "stop" | "length" | "abort" | "timeout" on the last delta, else None
    logprobs: list[float] | None = None  # one logprob per new token, when requested and reported
    num_prompt_tokens: int = 0  # 0 when the backend does not report it
    num_cached_tokens: int = 0  # prompt tokens not prefilled: prefix-cache hits and reused chunks (blend mode)
    fallback: str | None = None  # set when a fallback device produced this delta, e.g. "gpu oom: retried on cpu"


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole generation, assembled from its deltas."""

    text: str
    num_prompt_tokens: int
    num_completion_tokens: int
    finish_reason: str
    logprobs: list[float] | None  # per token, None when not requested or not reported
    num_cached_tokens: int
    ttft_s: float  # request submitted → first delta
    latency_s: float  # request submitted → last delta


class CompletionBuilder:
    """Collects deltas into a Completion, timing the first and the last one."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self.pieces: list[str] = []
        self.logprobs: list[float] = []
        self.has_logprobs = False
        self.num_tokens = 0
        self.num_prompt_tokens = 0
        self.num_cached_tokens = 0
        self.finish_reason = "stop"

    def add(self, delta: TextDelta) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.pieces.append(delta.text)
        self.num_tokens += delta.num_tokens
        if delta.logprobs is not None:
            self.has_logprobs = True
            self.logprobs.extend(delta.logprobs)
        self.num_prompt_tokens = max(self.num_prompt_tokens, delta.num_prompt_tokens)
        self.num_cached_tokens = max(self.num_cached_tokens, delta.num_cached_tokens)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    def build(self) -> Completion:
        now = time.perf_counter()
        return Completion(
            text="".join(self.pieces),
            num_prompt_tokens=self.num_prompt_tokens,
            num_completion_tokens=self.num_tokens,
            finish_reason=self.finish_reason,
            logprobs=self.logprobs if self.has_logprobs else None,
            num_cached_tokens=self.num_cached_tokens,
            ttft_s=(self.first_at if self.first_at is not None else now) - self.started,
            latency_s=now - self.started,
        )


class LLMBackend(ABC):
    """A text generator. One instance serves many concurrent callers on one event loop.

    `prompt` is either finished prompt text (already chat-templated when it should be), that text in
    `PromptSegments`, or a list of chat messages, which the backend templates itself. Errors: ValueError for
    bad input, PromptTooLongError, EngineOverloadedError (native, raised before any delta), BackendError (openai).
    """

    name: str

    @abstractmethod
    def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        """Deltas as they are produced; the last one carries finish_reason.

        Closing the generator early (break + aclose, task cancellation) cancels the request.
        """

    async def complete(self, prompt: Prompt, params: SamplingParams) -> Completion:
        builder = CompletionBuilder()
        async with aclosing(self.stream(prompt, params)) as deltas:
            async for delta in deltas:
                builder.add(delta)
        return builder.build()

    @abstractmethod
    def format_chat(self, messages: Messages) -> str:
        """The prompt text for `messages`, ending with the assistant turn's opening."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model sees it (an upper estimate when no tokenizer is at hand)."""

    @abstractmethod
    def stats(self) -> EngineStats:
        """Running/waiting requests and KV blocks (zeros when the engine is remote)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish in-flight requests, then release the engine or connection pool."""
