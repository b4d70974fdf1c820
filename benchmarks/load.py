"""A bounded load generator for OpenAI-style streaming chat servers (asyncio + httpx, localhost).

`run_level` sends a fixed list of request bodies through N closed-loop clients: each client sends its
next request as soon as its previous answer has finished streaming, until the list is used up or the
level's overall timeout passes. Every request is clocked from the moment it was sent, so queueing in
the server counts: TTFT is the first non-empty content delta, latency the end of the stream.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.servers import CLIENT_KEEPALIVE_S


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One streamed request; `error` is None when it finished with a finish_reason."""

    ttft_s: float | None  # first content delta; None when no content came
    latency_s: float
    num_tokens: int  # completion tokens the server reported in its closing chunk
    error: str | None = None
    final: dict[str, Any] = field(default_factory=dict)  # the closing chunk (usage, finish_reason, extras)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LevelSummary:
    """What one system achieved at one concurrency level (percentiles over the successful requests)."""

    num_clients: int
    num_requests: int
    num_errors: int
    wall_s: float  # first request sent → last request finished
    qps: float  # successful requests per second of wall time
    p50_ttft_s: float
    p99_ttft_s: float
    p50_latency_s: float
    p99_latency_s: float
    mean_tokens: float  # completion tokens per successful request

    @classmethod
    def of(cls, num_clients: int, results: list[RequestResult], wall_s: float) -> LevelSummary:
        ok = [r for r in results if r.error is None]
        ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None) or [float("nan")]
        latencies = sorted(r.latency_s for r in ok) or [float("nan")]
        return cls(
            num_clients=num_clients,
            num_requests=len(results),
            num_errors=len(results) - len(ok),
            wall_s=wall_s,
            qps=len(ok) / wall_s if wall_s > 0 else 0.0,
            p50_ttft_s=percentile(ttfts, 50),
            p99_ttft_s=percentile(ttfts, 99),
            p50_latency_s=percentile(latencies, 50),
            p99_latency_s=percentile(latencies, 99),
            mean_tokens=statistics.mean(r.num_tokens for r in ok) if ok else 0.0,
        )


async def stream_one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> RequestResult:
    """POST a streaming chat completion and read its server-sent events to the end."""
    started = time.perf_counter()
    first_at: float | None = None
    final: dict[str, Any] | None = None

    def failed(reason: str) -> RequestResult:
        return RequestResult(None, time.perf_counter() - started, 0, reason)

    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return failed(f"HTTP {response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line[len("data: ") :])
                choice = chunk["choices"][0]
                if choice["delta"].get("content") and first_at is None:
                    first_at = time.perf_counter()
                if choice.get("finish_reason"):
                    final = chunk
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, IndexError) as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    if final is None:
        return failed("stream ended without a finish_reason")
    num_tokens = int(final.get("usage", {}).get("completion_tokens", 0))
    ttft = None if first_at is None else first_at - started
    return RequestResult(ttft, time.perf_counter() - started, num_tokens, None, final)


async def run_level(
    url: str,
    bodies: list[dict[str, Any]],
    num_clients: int,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[LevelSummary, list[RequestResult]]:
    """Send every body through `num_clients` closed-loop clients; stop at `timeout_s` whatever is left.

    Results come in the order of `bodies`; requests not finished by the timeout are errors.
    `transport` is for tests.
    """
    pending: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for item in enumerate(bodies):
        pending.put_nowait(item)
    done: list[RequestResult | None] = [None] * len(bodies)
    limits = httpx.Limits(
        max_connections=num_clients, max_keepalive_connections=num_clients, keepalive_expiry=CLIENT_KEEPALIVE_S
    )
    timeout = httpx.Timeout(timeout_s, connect=30.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) as client:

        async def client_loop() -> None:
            while not pending.empty():
                i, body = pending.get_nowait()
                done[i] = await stream_one(client, url, body)

        started = time.perf_counter()
        tasks = [asyncio.create_task(client_loop()) for _ in range(num_clients)]
        _, unfinished = await asyncio.wait(tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        wall_s = time.perf_counter() - started
    lost = RequestResult(None, timeout_s, 0, f"not finished within {timeout_s:.0f} s")
    results = [r if r is not None else lost for r in done]
    return LevelSummary.of(num_clients, results, wall_s), results
