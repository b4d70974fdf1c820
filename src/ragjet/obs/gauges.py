"""Point-in-time state read at scrape time: engine queues and KV blocks, prefix-cache hits, GPU memory.

A custom collector asks the live components when Prometheus scrapes, so the hot path never updates a
gauge and the numbers are never stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import torch
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

ENGINE_GAUGES = {
    "num_running": "Sequences being decoded",
    "num_waiting": "Requests queued for admission",
    "num_used_blocks": "KV cache blocks in use",
    "num_free_blocks": "KV cache blocks free",
}


MEMORY_PARTS = ("total", "limit", "other", "weights", "activations", "kv_cache")


class EngineCounts(Protocol):
    """What the gauges read of an engine snapshot (the engine's EngineStats has these and more)."""

    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def num_used_blocks(self) -> int: ...
    @property
    def num_free_blocks(self) -> int: ...
    @property
    def prefix_cache_queries(self) -> int: ...
    @property
    def prefix_cache_hits(self) -> int: ...
    @property
    def memory(self) -> Mapping[str, int | str]: ...


class EngineCollector(Collector):
    """Engine gauges and prefix-cache counters from `stats()`; nothing when the engine is not started."""

    def __init__(self, stats: Callable[[], EngineCounts]):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.stats()
        except RuntimeError:  # pipeline not started yet
            return
        for field, help_text in ENGINE_GAUGES.items():
            yield GaugeMetricFamily(f"ragjet_engine_{field}", help_text, value=getattr(stats, field, 0))
        yield CounterMetricFamily("ragjet_prefix_cache_queries", "Full KV blocks looked up in the prefix cache",
                                  value=getattr(stats, "prefix_cache_queries", 0))  # fmt: skip
        yield CounterMetricFamily("ragjet_prefix_cache_hits", "KV blocks served from the prefix cache",
                                  value=getattr(stats, "prefix_cache_hits", 0))  # fmt: skip
        yield from _chunk_cache_metrics(stats)
        memory = GaugeMetricFamily("ragjet_engine_memory_bytes", "The engine device's memory split: limit, "
                                   "in use by others, weights, activations, KV cache", labels=["part"])  # fmt: skip
        for part in MEMORY_PARTS:
            if isinstance(value := getattr(stats, "memory", {}).get(part), int):
                memory.add_metric([part], value)
        yield memory


def _chunk_cache_metrics(stats: EngineCounts) -> Iterator[Metric]:
    """Blend mode's chunk K/V cache (llm.chunk_reuse): lookups and hits (in chunks), entries and bytes held."""
    yield CounterMetricFamily("ragjet_chunk_cache_lookups", "Retrieved chunks looked up in the chunk KV cache",
                              value=getattr(stats, "chunk_cache_lookups", 0))  # fmt: skip
    yield CounterMetricFamily("ragjet_chunk_cache_hits", "Retrieved chunks whose K/V the chunk KV cache served",
                              value=getattr(stats, "chunk_cache_hits", 0))  # fmt: skip
    yield GaugeMetricFamily("ragjet_chunk_cache_entries", "Chunks held in the chunk KV cache",
                            value=getattr(stats, "chunk_cache_entries", 0))  # fmt: skip
    yield GaugeMetricFamily("ragjet_chunk_cache_bytes", "Host memory the chunk KV cache holds",
                            value=getattr(stats, "chunk_cache_bytes", 0))  # fmt: skip


class GpuCollector(Collector):
    """GPU memory (torch's allocator and the device total) and utilisation (NVML), per device, when CUDA exists."""

    def __init__(self) -> None:
        self._nvml = _init_nvml()

    def collect(self) -> Iterator[Metric]:
        if not torch.cuda.is_available():
            return
        memory = GaugeMetricFamily("ragjet_gpu_memory_bytes", "GPU memory", labels=["device", "kind"])
        util = GaugeMetricFamily("ragjet_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=["device"])
        for index in range(torch.cuda.device_count()):
            device = str(index)
            memory.add_metric([device, "allocated"], torch.cuda.memory_allocated(index))
            memory.add_metric([device, "reserved"], torch.cuda.memory_reserved(index))
            memory.add_metric([device, "total"], torch.cuda.get_device_properties(index).total_memory)
            if self._nvml is not None:
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                util.add_metric([device], self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
        yield memory
        yield util


def _init_nvml():  # type: ignore[no-untyped-def]
    """The pynvml module from nvidia-ml-py once initialised, or None where no NVIDIA driver is reachable."""
    if not torch.cuda.is_available():
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # noqa: BLE001 (utilisation is optional; memory gauges still work)
        log.info("GPU utilisation metrics unavailable: %s", exc)
        return None
