"""GPU → CPU failover for the native backend: a CUDA out-of-memory or a lost device moves serving to a CPU
twin of the engine, without a restart, until a probe finds the GPU healthy again.

Building the twin (loading the model again onto the CPU, converting and quantising it, compiling the CPU
kernels) took 13 s with SmolLM2: too long for the request that fails over. So where the host has the memory
for it, the twin is prepared in the background at start (`prepare_in_background`); elsewhere it is built on
the first failure, and a healthy service never pays its memory. While the GPU is unhealthy every request goes
to the twin; when a probe is due (ragjet.device.DeviceHealth: its interval, doubled after a relapse), the
request first runs it off the event loop and, if it passes, goes back to the GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ragjet.device import DeviceHealth

if TYPE_CHECKING:
    from collections.abc import Callable

    from ragjet.llm.engine.async_engine import AsyncLLMEngine

log = logging.getLogger(__name__)

RETRIED_ON_CPU = "gpu oom: retried on cpu"  # this request failed on the GPU and was finished on the CPU twin
SERVED_ON_CPU = "gpu unhealthy: served on cpu"  # the GPU was unhealthy when this request arrived


class CpuFallback:
    """Which engine serves the next request, and the CPU twin once one exists.

    `build_cpu_engine` loads the model onto the CPU and starts its engine (blocking: run off the loop);
    `health` decides when the GPU is probed, and its probe runs off the loop too.
    """

    def __init__(self, build_cpu_engine: Callable[[], AsyncLLMEngine], health: DeviceHealth):
        self._build, self.health = build_cpu_engine, health
        self.cpu_engine: AsyncLLMEngine | None = None
        self._build_lock = asyncio.Lock()
        self._prepared: Future[AsyncLLMEngine] | None = None

    def prepare_in_background(self) -> None:
        """Start building the twin on a thread now, so that a first failure finds it ready."""
        prepared: Future[AsyncLLMEngine] = Future()

        def build() -> None:
            started = time.perf_counter()
            try:
                prepared.set_result(self._build())
            except BaseException as exc:  # noqa: BLE001 (reported, then built again on a failure)
                log.warning("preparing the CPU twin failed (%s); it will be built if the GPU fails", exc)
                prepared.set_exception(exc)
                return
            log.info("CPU twin of the LLM engine prepared in %.1f s", time.perf_counter() - started)

        self._prepared = prepared
        threading.Thread(target=build, name="ragjet-cpu-twin", daemon=True).start()

    @property
    def is_on_cpu(self) -> bool:
        return self.health.is_failed

    async def engine_while_unhealthy(self) -> AsyncLLMEngine | None:
        """The CPU twin while the GPU is unhealthy (probing the GPU when a probe is due); None: use the GPU."""
        if not self.health.is_failed:
            return None
        if self.health.probe_due():
            self.health.record_probe(await asyncio.to_thread(self.health.probe))
            if not self.health.is_failed:
                return None
        return await self.cpu()

    async def fail_over(self, exc: BaseException) -> AsyncLLMEngine:
        """Record a GPU failure and return the CPU twin (built now if this is the first failure)."""
        self.health.failed(exc)
        return await self.cpu()

    async def close(self) -> None:
        """Shut the twin down, prepared or built (a preparation still running is waited for)."""
        if self.cpu_engine is None and self._prepared is not None:
            with contextlib.suppress(Exception):  # a failed preparation left nothing to shut down
                self.cpu_engine = await asyncio.wrap_future(self._prepared)
        self._prepared = None
        if self.cpu_engine is not None:
            await self.cpu_engine.shutdown(drain=True)

    async def cpu(self) -> AsyncLLMEngine:
        """The CPU twin, built once; concurrent first failures wait for the same build."""
        async with self._build_lock:
            if self.cpu_engine is None and self._prepared is not None:
                prepared, self._prepared = self._prepared, None
                with contextlib.suppress(Exception):  # logged by the builder: built again below
                    self.cpu_engine = await asyncio.wrap_future(prepared)
            if self.cpu_engine is None:
                started = time.perf_counter()
                self.cpu_engine = await asyncio.to_thread(self._build)
                log.warning("CPU twin of the LLM engine built in %.1f s", time.perf_counter() - started)
            return self.cpu_engine
