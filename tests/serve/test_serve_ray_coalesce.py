"""Deltas merged per interval on the generation replica (`coalesce.py`) against the uncoalesced stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is the optional extra ragjet[ray]")

from ragjet.llm.backends.base import TextDelta
from ragjet.serve.rayserve.coalesce import coalesced, merge_deltas

WORDS = [f" w{i}" for i in range(30)]


def deltas_of(words: list[str]) -> list[TextDelta]:
    last = len(words) - 1
    return [
        TextDelta(w, 1, finish_reason="length" if i == last else None, num_prompt_tokens=9) for i, w in enumerate(words)
    ]


async def source(deltas: list[TextDelta], gap_s: float, closed: list[bool] | None = None) -> AsyncGenerator[TextDelta]:
    """An engine stream: one delta every `gap_s` (0: all at once, without yielding to the loop)."""
    try:
        for delta in deltas:
            if gap_s:
                await asyncio.sleep(gap_s)
            yield delta
    finally:
        if closed is not None:
            closed.append(True)


async def collect(deltas: AsyncGenerator[TextDelta], interval_s: float) -> list[TextDelta]:
    return [d async for d in coalesced(deltas, interval_s)]


def test_coalesced_stream_says_what_the_uncoalesced_one_says_in_fewer_messages() -> None:
    reference = deltas_of(WORDS)
    merged = asyncio.run(collect(source(reference, 0.002), interval_s=0.02))
    assert "".join(d.text for d in merged) == "".join(WORDS)
    assert sum(d.num_tokens for d in merged) == len(WORDS)
    assert merged[0] == reference[0]  # the first delta is never held
    assert merged[-1].finish_reason == "length" and all(d.finish_reason is None for d in merged[:-1])
    assert all(d.num_prompt_tokens == 9 for d in merged)
    assert 2 <= len(merged) < len(WORDS) / 2


def test_interval_zero_merges_only_what_is_waiting() -> None:
    reference = deltas_of(WORDS)
    kept_up = asyncio.run(collect(source(reference, 0.001), interval_s=0))
    assert kept_up == reference  # a consumer that keeps up sees every delta as it was
    burst = asyncio.run(collect(source(reference, 0), interval_s=0))
    assert "".join(d.text for d in burst) == "".join(WORDS) and len(burst) < len(WORDS)


def test_the_last_delta_is_not_held_for_the_interval() -> None:
    started = time.perf_counter()
    merged = asyncio.run(collect(source(deltas_of(WORDS[:3]), 0.005), interval_s=30))
    assert time.perf_counter() - started < 5
    assert [d.text for d in merged] == [WORDS[0], WORDS[1] + WORDS[2]]


def test_an_error_comes_after_the_deltas_before_it() -> None:
    async def failing() -> AsyncGenerator[TextDelta]:
        yield TextDelta(" a", 1)
        yield TextDelta(" b", 1)
        raise ValueError("prompt too long")

    async def run() -> list[str]:
        seen = []
        with pytest.raises(ValueError, match="prompt too long"):
            async for delta in coalesced(failing(), 0.05):
                seen.append(delta.text)
        return seen

    assert "".join(asyncio.run(run())) == " a b"


def test_closing_the_coalesced_stream_closes_the_engine_stream() -> None:
    closed: list[bool] = []

    async def run() -> None:
        stream = coalesced(source(deltas_of(WORDS), 0.01, closed), 0)
        assert (await anext(stream)).text == WORDS[0]
        await stream.aclose()  # the client went away

    asyncio.run(run())
    assert closed == [True]


def test_merge_joins_logprobs_and_keeps_the_last_fallback_tag() -> None:
    parts = [
        TextDelta(" a", 1, logprobs=[-0.1], num_cached_tokens=4),
        TextDelta(" b", 2, logprobs=[-0.2, -0.3], fallback="resumed"),
        TextDelta("", 0, finish_reason="stop", logprobs=[]),
    ]
    merged = merge_deltas(parts)
    assert merged == TextDelta(" a b", 3, "stop", [-0.1, -0.2, -0.3], 0, 4, "resumed")
    assert merge_deltas([TextDelta(" a", 1), TextDelta(" b", 1)]).logprobs is None
