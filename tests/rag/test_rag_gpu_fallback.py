"""GPU → CPU failover through the real pipeline, with no GPU: the "GPU" engine is a CPU engine whose model
forward raises torch.OutOfMemoryError on demand, and the probe is a switch the test flips.

An out-of-memory request is finished by the CPU twin (the same greedy text a healthy engine gives), later
requests go to the twin while the probe fails, and serving returns to the primary once it passes.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest
import torch

from support.stack import require_layers

require_layers()

from ragjet.config import Settings
from ragjet.device import DeviceHealth
from ragjet.llm.backends.cpu_fallback import RETRIED_ON_CPU, SERVED_ON_CPU, CpuFallback
from ragjet.llm.backends.native import NativeBackend, build_engine
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.types import AskOptions
from support.tiny_models import COLLECTION

pytestmark = pytest.mark.asyncio(loop_scope="session")
QUESTION = "Which lava flows quickly?"
OPTIONS = AskOptions(collection=COLLECTION, top_k=2, max_tokens=12)
PROBE_INTERVAL_S = 5.0


@dataclass
class FlakyGpu:
    """The fault switches: forwards on the primary fail from call `fail_from` on; the probe says `healthy`."""

    fail_from: int | None = None
    num_forwards: int = 0
    healthy: bool = False
    now: float = 0.0
    probes: list[float] = field(default_factory=list)

    def probe(self) -> bool:
        self.probes.append(self.now)
        return self.healthy


@pytest.fixture
def gpu(pipeline: RagPipeline, rag_settings: Settings, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    faults = FlakyGpu()
    primary, tokenizer = build_engine(rag_settings.llm, torch.device("cpu"))
    model = primary.engine.model_runner.model
    forward = model.forward

    def flaky_forward(*args: object, **kwargs: object) -> torch.Tensor:
        faults.num_forwards += 1
        if faults.fail_from is not None and faults.num_forwards >= faults.fail_from:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", flaky_forward)
    health = DeviceHealth(faults.probe, interval_s=PROBE_INTERVAL_S, clock=lambda: faults.now)
    fallback = CpuFallback(lambda: build_engine(rag_settings.llm, torch.device("cpu"))[0], health)
    backend = NativeBackend(primary, tokenizer, fallback)
    reference = pipeline._backend
    monkeypatch.setattr(pipeline, "_backend", backend)
    yield faults, backend  # each test closes the backend on its own event loop
    monkeypatch.setattr(pipeline, "_backend", reference)


async def test_oom_is_retried_on_cpu_until_the_probe_passes(pipeline: RagPipeline, gpu) -> None:  # type: ignore[no-untyped-def]
    faults, backend = gpu
    try:
        expected = await pipeline.ask(QUESTION, OPTIONS)  # a healthy primary: the reference answer
        assert expected.degraded is None and backend.cpu_fallback.cpu_engine is None  # no twin until needed

        faults.fail_from = faults.num_forwards + 1
        retried = await pipeline.ask(QUESTION, OPTIONS)
        assert retried.degraded == RETRIED_ON_CPU and retried.finish_reason != "error"
        assert retried.text == expected.text and retried.completion_tokens == expected.completion_tokens
        assert backend.cpu_fallback.is_on_cpu and backend.cpu_fallback.health.num_failures == 1

        forwards = faults.num_forwards
        faults.now += PROBE_INTERVAL_S / 2  # no probe due yet: straight to the CPU twin
        served = await pipeline.ask(QUESTION, OPTIONS)
        assert served.degraded == SERVED_ON_CPU and served.text == expected.text
        assert faults.num_forwards == forwards and faults.probes == []

        faults.now += PROBE_INTERVAL_S  # a probe is due, and fails: still on the CPU
        assert (await pipeline.ask(QUESTION, OPTIONS)).degraded == SERVED_ON_CPU
        assert faults.probes == [faults.now] and faults.num_forwards == forwards

        faults.healthy, faults.fail_from = True, None
        faults.now += PROBE_INTERVAL_S
        back = await pipeline.ask(QUESTION, OPTIONS)
        assert back.degraded is None and back.text == expected.text and faults.num_forwards > forwards
        assert not backend.cpu_fallback.is_on_cpu
    finally:
        await backend.close()


async def test_oom_mid_answer_is_finished_on_cpu(pipeline: RagPipeline, gpu) -> None:  # type: ignore[no-untyped-def]
    faults, backend = gpu
    try:
        faults.fail_from = 4  # prefill and two decode steps succeed, then the GPU runs out of memory
        answer = await pipeline.ask(QUESTION, OPTIONS)
        assert answer.degraded == RETRIED_ON_CPU and answer.finish_reason in ("stop", "length")
        assert 3 <= answer.completion_tokens <= OPTIONS.max_tokens
        faults.now += 2 * PROBE_INTERVAL_S
        faults.healthy, faults.fail_from = True, None
        assert (await pipeline.ask(QUESTION, OPTIONS)).degraded is None
    finally:
        await backend.close()


async def test_a_failure_soon_after_recovery_doubles_the_probe_interval() -> None:
    now = [0.0]
    health = DeviceHealth(lambda: True, interval_s=5.0, clock=lambda: now[0])
    fallback = CpuFallback(lambda: "twin", health)  # type: ignore[arg-type,return-value]
    assert await fallback.fail_over(torch.OutOfMemoryError("CUDA out of memory")) == "twin"
    assert health.interval_s == 5.0
    now[0] = 6.0
    assert await fallback.engine_while_unhealthy() is None  # probe passed: back on the GPU
    now[0] = 10.0
    await fallback.fail_over(torch.OutOfMemoryError("CUDA out of memory"))
    assert health.interval_s == 10.0 and health.num_failures == 2
    now[0] = 14.0
    assert await fallback.engine_while_unhealthy() == "twin"  # not due until 20 s


async def test_a_twin_prepared_at_start_serves_the_first_failure_without_a_build() -> None:
    builds: list[str] = []
    ready = threading.Event()

    def build() -> str:
        ready.wait(5)  # still building when the first failure comes: the failure waits for this one build
        builds.append("twin")
        return "twin"

    fallback = CpuFallback(build, DeviceHealth(lambda: False))  # type: ignore[arg-type]
    fallback.prepare_in_background()
    waiting = asyncio.create_task(fallback.fail_over(torch.OutOfMemoryError("CUDA out of memory")))
    await asyncio.sleep(0.05)
    ready.set()
    assert await waiting == "twin" and await fallback.cpu() == "twin" and builds == ["twin"]


async def test_a_failed_preparation_is_built_again_on_the_first_failure() -> None:
    attempts: list[int] = []

    def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise MemoryError("no room for the twin")
        return "twin"

    fallback = CpuFallback(build, DeviceHealth(lambda: False))  # type: ignore[arg-type]
    fallback.prepare_in_background()
    assert await fallback.fail_over(torch.OutOfMemoryError("CUDA out of memory")) == "twin"
    assert len(attempts) == 2


async def test_the_twin_is_prepared_when_the_host_has_room_for_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragjet.llm.backends import native

    model = tmp_path / "model.gguf"
    model.write_bytes(b"\0" * 1000)
    monkeypatch.setattr(native, "available_ram", lambda: 6002)
    assert native.twin_fits(str(model))  # 3 x 1,000 bytes < half of 6,002
    monkeypatch.setattr(native, "available_ram", lambda: 6000)
    assert not native.twin_fits(str(model)) and not native.twin_fits(str(tmp_path / "absent.gguf"))
    assert native.available_ram() > 0
