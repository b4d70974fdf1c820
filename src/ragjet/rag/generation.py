"""Bookkeeping of one streamed generation: text, token counts, logprobs, queue/prefill/decode clocks."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


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
    finish_reason: str | None = None
    queue_ms: float = 0.0  # waiting in the engine before prefill began, when the backend reports it
    num_cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache

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
