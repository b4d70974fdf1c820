"""A real `ragjet serve` process (tiny stack) under overload, then shut down.

The bounded overload test, small: offered 4× the rate it sustains, the server keeps running, sheds the
excess with 429 + Retry-After, answers what it accepts within the deadline, its memory stays bounded, and
afterwards two steady passes of the same requests end at the same memory (no leak). The server has its own
process, as in production: a load generator sharing its interpreter would steal the event loop's CPU and add
its own queueing.

Then graceful shutdown (the last test, on the same process): on SIGTERM the answers in flight, over HTTP
and gRPC, are finished and delivered, new connections are refused, and the process exits by itself."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from support.stack import require_layers

require_layers()

from benchmarks.overload import (  # noqa: E402
    OverloadConfig,
    ServerProcess,
    rss_mb,
    run_overload,
    server_process,
    upload,
)
from ragjet.serve.proto import ragjet_pb2 as pb  # noqa: E402
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc  # noqa: E402
from support.tiny_models import COLLECTION  # noqa: E402

QUESTIONS = ("Which lava flows quickly?", "What keeps a lighthouse lit?", "How does bread rise?")
CONFIG = OverloadConfig(
    QUESTIONS, max_tokens=8, deadline_s=2.0, calibration_clients=8, calibration_requests=16,
    multiple=4.0, duration_s=3.0, max_requests=200, round_timeout_s=30.0, rounds=3,
)  # fmt: skip
MAX_TOKENS = 600  # long enough to still be decoding when the signal arrives
RSS_BOUND_MB = 160  # no overload round may peak this far above where the first began
STEADY_REQUESTS, RSS_LEAK_MB = 40, 8  # one steady pass of this many requests may not end this much above the last


@pytest.fixture(scope="module")
def overload_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path
) -> Iterator[ServerProcess]:
    settings: dict[str, dict[str, object]] = {
        "llm": {"model": str(tiny_llama_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8},
        "embed": {"device": "cpu"},
        "index": {"device": "cpu"},
        "rag": {"max_in_flight": 32, "answer_cache_entries": 0},  # repeated questions must reach the engine
        "serve": {"default_collection": COLLECTION, "auth_enabled": False, "log_level": "warning",
                  "rate_limit_per_s": 1e6, "rate_limit_burst": 1_000_000},  # admission control sheds, not the limiter
    }  # fmt: skip
    with server_process(settings, tmp_path_factory.mktemp("overload-data")) as server:
        upload(server.url, COLLECTION, sorted(corpus_dir.iterdir()))
        yield server


def test_four_times_the_sustainable_rate(overload_server: ServerProcess) -> None:
    url, pid = overload_server.url, overload_server.process.pid
    report = asyncio.run(run_overload(url, CONFIG, pid=pid))
    print(f"\noverload: {report.to_json()}")
    assert report.alive_after and report.sustainable_rps > 0
    for r in report.rounds:
        assert r.num_errors == 0, r
        assert r.num_served > 0 and r.num_rejected > 0, r  # it sheds, and it still serves
        assert r.retry_after and all(int(v) >= 1 for v in r.retry_after)
        # By the server's clock (from the app's arrival stamp) every accepted answer is within its deadline. The
        # client's clock also counts time outside the app (uvicorn's accept and send, this process's own HTTP
        # client, all on 2 shared cores): at a few hundred requests/s even its median passed the deadline plus
        # slack in a clean-clone run (2.53 s with none late in the server), so it is reported, not asserted.
        assert r.num_late_in_server == 0, r
        # Bounded memory under overload. Rounds at the same offered rate admit different numbers of requests
        # (49, 49 and 155 in one run, as the client's own pace varies), so their working sets differ.
        assert r.rss_peak_mb - report.rounds[0].rss_before_mb < RSS_BOUND_MB, r
    # No leak: two steady passes of the same requests, one after the other, end at the same memory.
    after = [steady_pass(url, pid) for _ in range(2)]
    print(f"steady passes of {STEADY_REQUESTS} requests: RSS after each {after} MB")
    assert after[1] - after[0] < RSS_LEAK_MB


def steady_pass(url: str, pid: int) -> float:
    """STEADY_REQUESTS answers one at a time; the server's RSS (MB) after them."""
    with httpx.Client(timeout=60) as client:
        for i in range(STEADY_REQUESTS):
            body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], "max_tokens": 8}
            client.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
    return round(rss_mb(pid), 1)


def test_sigterm_finishes_the_answers_in_flight_then_exits(overload_server: ServerProcess) -> None:
    streaming, results = threading.Event(), {}
    body = {"messages": [{"role": "user", "content": QUESTIONS[0]}], "max_tokens": MAX_TOKENS, "stream": True,
            "ragjet": {"top_k": 1}}  # fmt: skip

    def http_stream() -> None:
        lines = []
        with httpx.stream("POST", f"{overload_server.url}/v1/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if '"content"' in line:
                    streaming.set()
                if line:
                    lines.append(line)
        results["http"] = lines

    def grpc_ask() -> None:
        with grpc.insecure_channel(overload_server.grpc_target) as channel:
            request = pb.AskRequest(question=QUESTIONS[0], max_tokens=MAX_TOKENS, top_k=1)
            results["grpc"] = list(pb_grpc.RagJetStub(channel).Ask(request, timeout=120))

    threads = [threading.Thread(target=f) for f in (http_stream, grpc_ask)]
    for t in threads:
        t.start()
    assert streaming.wait(60), "the answer never started streaming"
    overload_server.process.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    for t in threads:
        t.join(120)

    http = results["http"]
    assert http[-1] == "data: [DONE]"
    closing = json.loads(http[-2].removeprefix("data: "))
    assert closing["choices"][0]["finish_reason"] in ("stop", "length") and closing["ragjet"]["degraded"] is None
    done = results["grpc"][-1].done
    assert done.finish_reason in ("stop", "length") and not done.degraded and done.completion_tokens > 0
    assert overload_server.process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    print(f"\nshutdown: SIGTERM to exit {time.perf_counter() - signalled:.2f} s, both answers delivered whole")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{overload_server.url}/healthz", timeout=5)
