"""Request deadlines: the stage that runs out of time is named; other timeouts pass through untouched."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from ragjet.rag.deadline import Deadline, DeadlineExceededError


async def test_no_deadline_never_expires():
    deadline = Deadline.start(None)
    assert deadline.remaining_s() is None
    assert await deadline.run("retrieval", asyncio.sleep(0, result=7)) == 7


async def test_slow_stage_raises_naming_the_stage():
    deadline = Deadline.start(0.05)
    with pytest.raises(DeadlineExceededError, match="0.05s passed during retrieval"):
        await deadline.run("retrieval", asyncio.sleep(5))
    assert deadline.remaining_s() < 0


async def test_expired_deadline_fails_before_starting_the_stage():
    deadline = Deadline(0.01, time.monotonic() - 1)
    started = asyncio.Event()

    async def stage() -> None:
        started.set()

    coroutine = stage()
    with pytest.raises(DeadlineExceededError, match="query embedding"):
        await deadline.run("query embedding", coroutine)
    assert not started.is_set()
    assert inspect.getcoroutinestate(coroutine) == "CORO_CLOSED"  # closed, not left to warn "never awaited"


async def test_a_timeout_inside_the_stage_is_not_mistaken_for_the_deadline():
    async def stage() -> None:
        raise TimeoutError("index backend timed out")

    with pytest.raises(TimeoutError, match="index backend") as info:
        await Deadline.start(10).run("retrieval", stage())
    assert not isinstance(info.value, DeadlineExceededError)


def test_non_positive_budget_is_a_bad_option():
    with pytest.raises(ValueError, match="deadline_s must be positive"):
        Deadline.start(0)
