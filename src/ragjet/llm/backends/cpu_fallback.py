"""GPU → CPU failover for the native backend: a CUDA out-of-memory or a lost device moves serving to a CPU
twin of the engine, without a restart, until a probe finds the GPU healthy again.

The twin is built lazily on the first failure (the model is loaded again, onto the CPU: seconds), so a
healthy service never pays its memory. While the GPU is unhealthy every request goes to the twin; each
request arriving after `probe_interval_s` first runs the probe (a tiny allocation and a sync on the GPU)
and, if it passes, goes back to the GPU. A GPU that fails again soon after it recovered is probed at a
doubled interval (up to `max_probe_interval_s`), so a card that only just fits does not flap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragjet.llm.engine.async_engine import AsyncLLMEngine

log = logging.getLogger(__name__)

RETRIED_ON_CPU = "gpu oom: retried on cpu"  # this request failed on the GPU and was finished on the CPU twin
SERVED_ON_CPU = "gpu unhealthy: served on cpu"  # the GPU was unhealthy when this request arrived


class CpuFallback:
    """Which engine serves the next request, and the CPU twin once one exists.

    `build_cpu_engine` loads the model onto the CPU and starts its engine (blocking: run off the loop);
    `probe` returns whether the GPU can serve again (blocking, quick). `clock` is injectable for tests.
    """

    def __init__(
        self,
        build_cpu_engine: Callable[[], AsyncLLMEngine],
        probe: Callable[[], bool],
        probe_interval_s: float = 5.0,
        max_probe_interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._build, self._probe, self._clock = build_cpu_engine, probe, clock
        self.base_interval_s, self.max_interval_s = probe_interval_s, max_probe_interval_s
        self.interval_s = probe_interval_s
        self.cpu_engine: AsyncLLMEngine | None = None
        self.unhealthy_since: float | None = None  # clock time of the failure that moved serving to the CPU
        self.recovered_at: float | None = None
        self.num_failovers = 0
        self._next_probe_at = 0.0
        self._build_lock = asyncio.Lock()

    @property
    def is_on_cpu(self) -> bool:
        return self.unhealthy_since is not None

    async def engine_while_unhealthy(self) -> AsyncLLMEngine | None:
        """The CPU twin while the GPU is unhealthy (probing the GPU when a probe is due); None: use the GPU."""
        if self.unhealthy_since is None:
            return None
        if self._clock() >= self._next_probe_at:
            healthy = await asyncio.to_thread(self._probe)
            now = self._clock()
            if healthy:
                log.warning("GPU healthy again after %.1f s on the CPU: serving on the GPU", now - self.unhealthy_since)
                self.unhealthy_since, self.recovered_at = None, now
                return None
            self._next_probe_at = now + self.interval_s
        return await self.cpu()

    async def fail_over(self, exc: BaseException) -> AsyncLLMEngine:
        """Record a GPU failure and return the CPU twin (built now if this is the first failure)."""
        now = self._clock()
        if self.unhealthy_since is None:
            recent = self.recovered_at is not None and now - self.recovered_at < self.max_interval_s
            self.interval_s = min(self.max_interval_s, self.interval_s * 2) if recent else self.base_interval_s
            self.unhealthy_since, self._next_probe_at = now, now + self.interval_s
            self.num_failovers += 1
            log.warning("GPU failed (%s: %s): serving on the CPU, next probe in %.0f s",
                        type(exc).__name__, exc, self.interval_s)  # fmt: skip
        return await self.cpu()

    async def cpu(self) -> AsyncLLMEngine:
        """The CPU twin, built once; concurrent first failures wait for the same build."""
        async with self._build_lock:
            if self.cpu_engine is None:
                started = time.perf_counter()
                self.cpu_engine = await asyncio.to_thread(self._build)
                log.warning("CPU twin of the LLM engine built in %.1f s", time.perf_counter() - started)
            return self.cpu_engine
