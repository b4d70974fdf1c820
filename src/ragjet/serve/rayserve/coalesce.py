"""Fewer, bigger stream messages across the Ray boundary: deltas merged over a short interval.

Each message a generation replica yields wakes three processes (the replica's Serve loop, the ingress, the HTTP
proxy) before the client sees it, and on a host whose cores the engine's OpenMP team fills, that work is taken from
decode steps: profiled on 2 cores (docs/scaling.md), a step took ~30% longer behind the Ray path than in-process.
Merging the deltas of one interval into one message keeps the stream token-by-token-ish (a few tokens per message)
while cutting those wake-ups. The first delta and the last are never held, so TTFT and the end of the answer are
not delayed; Ray Serve LLM batches its streams the same way (`stream_batching_interval_ms`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, suppress

from ragjet.llm.backends.base import TextDelta

_END = object()  # the source is exhausted


def merge_deltas(deltas: Sequence[TextDelta]) -> TextDelta:
    """One delta that says what `deltas` said in order (texts and logprobs joined, tokens summed, the last
    finish reason and fallback tag)."""
    if len(deltas) == 1:
        return deltas[0]
    logprobs = [lp for d in deltas if d.logprobs is not None for lp in d.logprobs]
    return TextDelta(
        text="".join(d.text for d in deltas),
        num_tokens=sum(d.num_tokens for d in deltas),
        finish_reason=deltas[-1].finish_reason,
        logprobs=logprobs if any(d.logprobs is not None for d in deltas) else None,
        num_prompt_tokens=max(d.num_prompt_tokens for d in deltas),
        num_cached_tokens=max(d.num_cached_tokens for d in deltas),
        fallback=next((d.fallback for d in reversed(deltas) if d.fallback is not None), None),
    )


async def coalesced(deltas: AsyncGenerator[TextDelta, None], interval_s: float) -> AsyncGenerator[TextDelta, None]:
    """`deltas` with at most one message per `interval_s`: what arrives within an interval is merged.

    0 merges only what is already waiting (a consumer that keeps up sees every delta). An error of `deltas` comes
    after the deltas before it. Closing this generator cancels the reading of `deltas` and closes it, which aborts
    the request in the engine.
    """
    loop = asyncio.get_running_loop()
    buffer: deque[object] = deque()  # deltas, then possibly _END or an exception
    arrived = asyncio.Event()  # set while `buffer` holds something not yet looked at
    reader = asyncio.create_task(_read_into(deltas, buffer, arrived))
    try:
        last_sent = float("-inf")
        while True:
            await arrived.wait()
            deadline = last_sent + interval_s
            while not _is_last(buffer[-1]) and (wait_s := deadline - loop.time()) > 0:
                arrived.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), wait_s)
            items = list(buffer)
            buffer.clear()
            arrived.clear()
            held = [item for item in items if isinstance(item, TextDelta)]
            if held:
                last_sent = loop.time()
                yield merge_deltas(held)
            if items[-1] is _END:
                return
            if isinstance(items[-1], BaseException):
                raise items[-1]
    finally:
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader


async def _read_into(deltas: AsyncGenerator[TextDelta, None], buffer: deque[object], arrived: asyncio.Event) -> None:
    """Every delta into `buffer`, then `_END` (or the error that ended `deltas`)."""
    try:
        async with aclosing(deltas):
            async for delta in deltas:
                buffer.append(delta)
                arrived.set()
        buffer.append(_END)
    except Exception as exc:
        buffer.append(exc)
    arrived.set()


def _is_last(item: object) -> bool:
    return not isinstance(item, TextDelta) or item.finish_reason is not None
