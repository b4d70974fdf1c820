"""Scrape-time gauges: engine queues, KV blocks and prefix-cache counters come from the live stats."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from ragjet.obs.gauges import EngineCollector, GpuCollector


@dataclass(frozen=True)
class FakeStats:
    num_running: int = 3
    num_waiting: int = 5
    num_used_blocks: int = 40
    num_free_blocks: int = 60
    prefix_cache_queries: int = 12
    prefix_cache_hits: int = 9
    chunk_cache_lookups: int = 20
    chunk_cache_hits: int = 7
    chunk_cache_entries: int = 4
    chunk_cache_bytes: int = 4096


def scrape(*collectors: object) -> str:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_engine_gauges_read_the_stats_at_scrape_time() -> None:
    stats = [FakeStats()]
    collector = EngineCollector(lambda: stats[0])
    text = scrape(collector)
    assert "ragjet_engine_num_running 3.0" in text and "ragjet_engine_num_waiting 5.0" in text
    assert "ragjet_engine_num_used_blocks 40.0" in text and "ragjet_engine_num_free_blocks 60.0" in text
    assert "ragjet_prefix_cache_hits_total 9.0" in text and "ragjet_prefix_cache_queries_total 12.0" in text
    assert "ragjet_chunk_cache_hits_total 7.0" in text and "ragjet_chunk_cache_lookups_total 20.0" in text
    assert "ragjet_chunk_cache_entries 4.0" in text and "ragjet_chunk_cache_bytes 4096.0" in text
    stats[0] = FakeStats(num_running=0)
    assert "ragjet_engine_num_running 0.0" in scrape(collector)  # a fresh read, not a cached value


def test_engine_not_started_exports_nothing() -> None:
    def not_started() -> FakeStats:
        raise RuntimeError("the RAG pipeline is not started")

    assert "ragjet_engine" not in scrape(EngineCollector(not_started))


def test_gpu_collector_is_silent_without_cuda() -> None:
    import torch

    text = scrape(GpuCollector())
    assert ("ragjet_gpu_memory_bytes" in text) == torch.cuda.is_available()
