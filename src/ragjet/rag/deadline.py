"""A request's time budget, shared by every stage it passes through."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceededError(TimeoutError):
    """The request's deadline passed before generation could start; nothing was generated."""


@dataclass(frozen=True, slots=True)
class Deadline:
    budget_s: float | None  # None: no deadline
    started_at: float  # time.monotonic() at the request's arrival

    @classmethod
    def start(cls, budget_s: float | None, started_at: float | None = None) -> Deadline:
        """A budget counted from `started_at` (a time.monotonic() reading; default: now)."""
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {budget_s}")
        return cls(budget_s, time.monotonic() if started_at is None else started_at)

    def elapsed_ms(self) -> float:
        """Time since the request arrived: its total, once it is answered."""
        return (time.monotonic() - self.started_at) * 1e3

    def remaining_s(self) -> float | None:
        if self.budget_s is None:
            return None
        return self.budget_s - self.elapsed_ms() / 1e3

    def expired_error(self, stage: str) -> DeadlineExceededError:
        return DeadlineExceededError(f"deadline of {self.budget_s:g}s passed during {stage}; nothing was generated")

    def check(self, stage: str) -> None:
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            raise self.expired_error(stage)

    async def run(self, stage: str, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, or raise DeadlineExceededError naming `stage` when the budget runs out first."""
        try:
            self.check(stage)
        except DeadlineExceededError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: close it rather than leave it to be collected un-awaited
            raise
        timeout = asyncio.timeout(self.remaining_s())
        try:
            async with timeout:
                return await awaitable
        except TimeoutError:
            if timeout.expired():
                raise self.expired_error(stage) from None
            raise
