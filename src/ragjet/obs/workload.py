"""Drive a question workload at a fixed concurrency, in-process or against a running server.

Each completed request contributes the pipeline's own stage timings (``StageTimings.as_dict()`` in
process, the ``ragjet.timings_ms`` field of an OpenAI-compatible response over HTTP); the driver
only measures the wall time of the whole workload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

Request = Callable[[str], Awaitable[dict[str, float]]]  # question → that request's timings_ms


@dataclass(slots=True)
class WorkloadRun:
    timings: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one message per failed request
    wall_s: float = 0.0


def read_questions(path: Path) -> list[str]:
    """One question per non-blank line; raises ValueError naming the file if it is missing or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read questions from {path}: {exc.__class__.__name__}") from None
    questions = [line.strip() for line in lines if line.strip()]
    if not questions:
        raise ValueError(f"{path}: no questions (expected one per line)")
    return questions


async def run_workload(request: Request, questions: Sequence[str], num_requests: int, concurrency: int) -> WorkloadRun:
    """Send `num_requests` questions (cycling through `questions`), at most `concurrency` at a time."""
    if num_requests < 1 or concurrency < 1 or not questions:
        raise ValueError("a workload needs at least one question, one request and a concurrency of at least 1")
    run = WorkloadRun()
    gate = asyncio.Semaphore(concurrency)

    async def one(question: str) -> None:
        async with gate:
            try:
                run.timings.append(await request(question))
            except Exception as exc:  # a load generator keeps going; failures are counted and reported
                run.errors.append(f"{exc.__class__.__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(one(questions[i % len(questions)]) for i in range(num_requests)))
    run.wall_s = time.perf_counter() - started
    return run


def http_request(client: httpx.AsyncClient, collection: str | None, max_tokens: int) -> Request:
    """Requests to ``/v1/chat/completions`` of the server whose base URL `client` has."""

    async def request(question: str) -> dict[str, float]:
        body = {
            "model": "ragjet",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            # A profile measures the pipeline's stages: a repeated question must not come from the answer cache.
            "ragjet": {"cache": False, **({"collection": collection} if collection else {})},
        }
        response = await client.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        timings = response.json().get("ragjet", {}).get("timings_ms")
        if not isinstance(timings, dict):
            raise RuntimeError("the response has no ragjet.timings_ms field (is this a ragjet server?)")
        return {name: float(ms) for name, ms in timings.items()}

    return request
