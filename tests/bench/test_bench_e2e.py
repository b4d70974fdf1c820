"""The end-to-end benchmark's load generator and summaries, against an in-memory SSE server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from benchmarks.e2e import SETTINGS, median_stages, server_env
from benchmarks.load import LevelSummary, RequestResult, percentile, run_level
from ragjet.config import load_settings


def sse(*payloads: object) -> bytes:
    return b"".join(f"data: {json.dumps(p)}\n\n".encode() for p in payloads) + b"data: [DONE]\n\n"


def delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def closing(num_tokens: int) -> dict[str, object]:
    return {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
        "usage": {"completion_tokens": num_tokens},
        "ragjet": {"timings_ms": {"embed_ms": float(num_tokens), "prefill_ms": 10.0 * num_tokens}},
    }


def handler(request: httpx.Request) -> httpx.Response:
    """Answers with the question's length in tokens; 'fail' gets a 500, 'cut' a stream without an end."""
    question = json.loads(request.content)["messages"][0]["content"]
    if question == "fail":
        return httpx.Response(500, json={"error": {"message": "boom"}})
    if question == "cut":
        return httpx.Response(200, content=sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    return httpx.Response(200, content=sse(delta(""), delta("an"), delta("swer"), closing(len(question))))


def body(question: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": question}], "stream": True}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 1) == 1.0


def test_summary_counts_errors_and_ignores_them_in_percentiles() -> None:
    ok = [RequestResult(0.1 * i, 1.0 * i, 4) for i in range(1, 5)]
    failed = RequestResult(None, 99.0, 0, "HTTP 500")
    summary = LevelSummary.of(2, [*ok, failed], wall_s=2.0)
    assert (summary.num_requests, summary.num_errors) == (5, 1)
    assert summary.qps == pytest.approx(2.0)
    assert summary.p50_latency_s == 2.0 and summary.p99_latency_s == 4.0
    assert summary.p50_ttft_s == pytest.approx(0.2)
    assert summary.mean_tokens == 4


def test_run_level_streams_every_request_in_order_and_reports_failures() -> None:
    questions = ["a", "bb", "fail", "ccc", "cut", "dddd"]
    summary, results = asyncio.run(
        run_level("http://test/v1/chat/completions", [body(q) for q in questions], 3, 10, httpx.MockTransport(handler))
    )
    assert [r.num_tokens for r in results] == [1, 2, 0, 3, 0, 4]
    assert results[2].error is not None and results[2].error.startswith("HTTP 500")
    assert results[4].error == "stream ended without a finish_reason"
    assert all(r.ttft_s is not None and 0 < r.ttft_s <= r.latency_s for r in results if r.error is None)
    assert (summary.num_requests, summary.num_errors, summary.mean_tokens) == (6, 2, 2.5)
    assert median_stages(results, "ragjet") == {"embed": 2.5, "prefill": 25.0}


def test_server_environment_gives_the_benchmark_settings(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name, value in server_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.data_dir == tmp_path
    assert settings.chunk.max_tokens == SETTINGS["chunk"]["max_tokens"]
    assert settings.retrieve.use_bm25 is False
    assert settings.serve.auth_enabled is False
