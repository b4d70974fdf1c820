"""The bounded overload test, small: a tiny-stack `ragjet serve` subprocess offered 4× the rate it sustains
keeps running, sheds the excess with 429 + Retry-After, answers what it accepts within the deadline, and its
memory does not grow from one overload round to the next. The server has its own process, as in production:
a load generator sharing its interpreter would steal the event loop's CPU and add its own queueing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.stack import require_layers

require_layers()

from ragjet.bench.overload import (  # noqa: E402
    DEADLINE_SLACK_S,
    OverloadConfig,
    ServerProcess,
    rss_mb,
    run_overload,
    server_process,
    upload,
)
from support.tiny_models import COLLECTION  # noqa: E402

QUESTIONS = ("Which lava flows quickly?", "What keeps a lighthouse lit?", "How does bread rise?")
CONFIG = OverloadConfig(
    QUESTIONS, max_tokens=8, deadline_s=2.0, calibration_clients=8, calibration_requests=16,
    multiple=4.0, duration_s=3.0, max_requests=200, round_timeout_s=30.0, rounds=2,
)  # fmt: skip
RSS_GROWTH_MB = 32  # round 2 may not end this much above round 1


@pytest.fixture(scope="module")
def overload_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path
) -> Iterator[ServerProcess]:
    settings: dict[str, dict[str, object]] = {
        "llm": {"model": str(tiny_llama_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8},
        "embed": {"device": "cpu"},
        "index": {"device": "cpu"},
        "rag": {"max_in_flight": 32},
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
    first, second = report.rounds
    for r in report.rounds:
        assert r.num_errors == 0, r
        assert r.num_served > 0 and r.num_rejected > 0, r  # it sheds, and it still serves
        assert r.retry_after and all(int(v) >= 1 for v in r.retry_after)
        assert r.num_late == 0 and r.max_latency_s <= CONFIG.deadline_s + DEADLINE_SLACK_S, r
    assert second.rss_after_mb - first.rss_after_mb < RSS_GROWTH_MB
    assert rss_mb(pid) > 0
