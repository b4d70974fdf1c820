"""AsyncLLMEngine on a real (tiny, random-weight) model: streaming, concurrency, aborts, errors, shutdown.

The slow reference is the synchronous LLMEngine.generate on the same engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Needs the engine (SamplingParams, LLMEngine, loaders): skip until it lands.
for _module in ("ragjet.llm.sampling_params", "ragjet.llm.engine.llm_engine", "ragjet.llm.tokenizer"):
    pytest.importorskip(_module)

from ragjet.llm.engine.async_engine import AsyncLLMEngine, EngineStoppedError  # noqa: E402
from ragjet.llm.engine.errors import EngineOverloadedError, PromptTooLongError  # noqa: E402
from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine  # noqa: E402
from ragjet.llm.loaders import load_model  # noqa: E402
from ragjet.llm.sampling_params import SamplingParams  # noqa: E402
from ragjet.models import ModelNotFoundError  # noqa: E402

PROMPTS = ["The lighthouse", "Sourdough bread rises", "Mount Etna on Sicily", "A Fresnel lens", "Basaltic lava"]


def greedy(max_tokens: int, **kwargs: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> LLMEngine:
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    return LLMEngine(loaded, EngineConfig(max_num_seqs=4, max_model_len=256, block_size=4, max_waiting=8))


@pytest.fixture
async def async_engine(engine: LLMEngine) -> AsyncIterator[AsyncLLMEngine]:
    front = AsyncLLMEngine(engine)
    yield front
    await front.shutdown(drain=False)
    assert engine.stats().num_used_blocks == 0  # nothing leaked by the test


def reference(engine: LLMEngine, prompt: str, params: SamplingParams) -> list[int]:
    """Token ids from the synchronous engine, alone."""
    (output,) = engine.generate([prompt], params)
    return list(output.token_ids)


async def collect(front: AsyncLLMEngine, prompt: str, params: SamplingParams) -> tuple[list[int], str, str | None]:
    tokens, pieces, reason = [], [], None
    async for out in front.stream(prompt, params):
        tokens.extend(out.new_token_ids)
        pieces.append(out.new_text)
        reason = out.finish_reason
    return tokens, "".join(pieces), reason


async def wait_for_free_blocks(engine: LLMEngine, timeout_s: float = 5.0) -> int:
    """Used KV blocks once the engine settled (aborts take effect at the next step)."""
    for _ in range(int(timeout_s / 0.01)):
        if engine.stats().num_used_blocks == 0:
            return 0
        await asyncio.sleep(0.01)
    return engine.stats().num_used_blocks


async def test_stream_matches_the_synchronous_engine(async_engine: AsyncLLMEngine, engine: LLMEngine) -> None:
    params = greedy(12)
    tokens, text, reason = await collect(async_engine, PROMPTS[0], params)
    await async_engine.shutdown()  # the sync reference needs the engine to itself
    assert tokens == reference(engine, PROMPTS[0], params)
    assert reason == "length" and text


async def test_concurrent_callers_each_get_their_own_greedy_output(engine: LLMEngine) -> None:
    params = greedy(10)
    expected = [reference(engine, p, params) for p in PROMPTS]
    front = AsyncLLMEngine(engine)
    results = await asyncio.gather(*(collect(front, p, params) for p in PROMPTS * 2))
    await front.shutdown()
    assert [tokens for tokens, _, _ in results] == expected * 2


async def test_generate_returns_the_whole_completion(async_engine: AsyncLLMEngine) -> None:
    completion = await async_engine.generate(PROMPTS[1], greedy(7, logprobs=True))
    assert completion.num_completion_tokens == 7 and completion.finish_reason == "length"
    assert completion.logprobs is not None and len(completion.logprobs) == 7
    assert all(lp <= 0 for lp in completion.logprobs)
    assert completion.num_prompt_tokens > 0 and 0 < completion.ttft_s <= completion.latency_s


async def test_breaking_out_of_the_stream_aborts_and_frees_blocks(
    async_engine: AsyncLLMEngine, engine: LLMEngine
) -> None:
    async for _ in async_engine.stream(PROMPTS[2], greedy(200)):
        assert engine.stats().num_used_blocks > 0
        break
    assert await wait_for_free_blocks(engine) == 0
    assert not engine.has_unfinished()


async def test_aborts_are_carried_out_by_the_step_thread_between_steps(
    async_engine: AsyncLLMEngine, engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's abort never touches the scheduler or block pool while a step runs on the other thread."""
    aborted_on: list[threading.Thread] = []
    stepping = threading.Event()
    real_abort, real_step = engine.abort_request, engine.step

    def recording_abort(request_id: str) -> None:
        assert not stepping.is_set(), "abort ran in the middle of a step"
        aborted_on.append(threading.current_thread())
        real_abort(request_id)

    def slow_step() -> list:
        stepping.set()
        try:
            threading.Event().wait(0.02)  # a window in which the caller's abort arrives
            return real_step()
        finally:
            stepping.clear()

    monkeypatch.setattr(engine, "abort_request", recording_abort)
    monkeypatch.setattr(engine, "step", slow_step)
    for prompt in PROMPTS[:3]:
        async for _ in async_engine.stream(prompt, greedy(200)):
            break
    assert await wait_for_free_blocks(engine) == 0
    assert aborted_on == [async_engine._thread] * 3


async def test_cancelled_consumer_aborts_its_request(async_engine: AsyncLLMEngine, engine: LLMEngine) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in async_engine.stream(PROMPTS[3], greedy(200)):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for_free_blocks(engine) == 0


async def test_step_error_reaches_the_callers_and_later_requests_succeed(
    async_engine: AsyncLLMEngine, engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = engine.step
    calls = 0

    def failing_once() -> list:
        nonlocal calls
        calls += 1
        if calls == 2:  # injected fault: the second step of the batch blows up
            raise RuntimeError("injected kernel failure")
        return real_step()

    monkeypatch.setattr(engine, "step", failing_once)
    results = await asyncio.gather(*(async_engine.generate(p, greedy(20)) for p in PROMPTS[:3]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "injected kernel failure" in str(r) for r in results)
    assert await wait_for_free_blocks(engine) == 0
    completion = await async_engine.generate(PROMPTS[0], greedy(5))
    assert completion.num_completion_tokens == 5


async def test_out_of_memory_fails_only_the_largest_request_and_the_others_finish(
    async_engine: AsyncLLMEngine, engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward of more than 40 tokens runs out of (injected) memory: only the long prompt's, so it alone fails;
    the short requests that shared its first step are scheduled again and give their solo tokens."""
    import torch

    model = engine.model_runner.model
    forward = model.forward

    def small_memory(input_ids: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if len(input_ids) > 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return forward(input_ids, *args, **kwargs)

    short = PROMPTS[:3]
    expected = [reference(engine, p, greedy(8)) for p in short]
    monkeypatch.setattr(model, "forward", small_memory)
    long_prompt = " ".join(PROMPTS * 4)
    results = await asyncio.gather(
        *(collect(async_engine, p, greedy(8)) for p in [short[0], long_prompt, *short[1:]]), return_exceptions=True
    )
    assert isinstance(results[1], torch.OutOfMemoryError)
    assert [r[0] for r in (results[0], results[2], results[3])] == expected  # type: ignore[index]
    assert await wait_for_free_blocks(engine) == 0


async def test_engine_errors_are_raised_at_submission(async_engine: AsyncLLMEngine) -> None:
    with pytest.raises(PromptTooLongError):
        await async_engine.generate("word " * 400, greedy(4))
    with pytest.raises(ValueError, match="max_tokens"):
        await async_engine.generate(PROMPTS[0], SamplingParams(max_tokens=0))


async def test_overload_is_refused_immediately(async_engine: AsyncLLMEngine) -> None:
    streams = [async_engine.stream(p, greedy(50)) for p in PROMPTS * 6]  # 30 > 4 running + 8 waiting
    firsts = await asyncio.gather(*(anext(s) for s in streams), return_exceptions=True)
    refused = [r for r in firsts if isinstance(r, BaseException)]
    assert refused and all(isinstance(r, EngineOverloadedError) for r in refused)
    assert len(refused) < len(streams)  # the others were admitted and streamed
    for stream in streams:
        await stream.aclose()


async def test_idle_engine_thread_does_not_step(
    async_engine: AsyncLLMEngine, engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await async_engine.generate(PROMPTS[0], greedy(3))
    steps = 0
    real_step = engine.step

    def counting_step() -> list:
        nonlocal steps
        steps += 1
        return real_step()

    monkeypatch.setattr(engine, "step", counting_step)
    await asyncio.sleep(0.2)
    assert steps == 0


async def test_shutdown_drains_in_flight_requests_then_refuses_new_ones(engine: LLMEngine) -> None:
    front = AsyncLLMEngine(engine)
    pending = [asyncio.create_task(front.generate(p, greedy(15))) for p in PROMPTS[:3]]
    await asyncio.sleep(0)  # let the tasks submit
    await front.shutdown(drain=True)
    completions = await asyncio.gather(*pending)
    assert [c.num_completion_tokens for c in completions] == [15, 15, 15]
    with pytest.raises(EngineStoppedError):
        await front.generate(PROMPTS[0], greedy(3))
    assert not front._thread.is_alive()  # its own step thread (a session's live server keeps another running)


async def test_shutdown_without_drain_cuts_requests_off(engine: LLMEngine) -> None:
    front = AsyncLLMEngine(engine)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in front.stream(PROMPTS[4], greedy(200)):
            first_delta.set()

    task = asyncio.create_task(consume())
    await first_delta.wait()
    await front.shutdown(drain=False)
    with pytest.raises(EngineStoppedError):
        await task
    assert engine.stats().num_used_blocks == 0


async def test_an_engine_built_by_a_function_is_built_on_the_step_thread(tiny_llama_dir: Path) -> None:
    built_on: list[threading.Thread] = []

    def build() -> LLMEngine:
        built_on.append(threading.current_thread())
        loaded = load_model(str(tiny_llama_dir), device="cpu")
        return LLMEngine(loaded, EngineConfig(max_num_seqs=2, max_model_len=64, block_size=4))

    front = AsyncLLMEngine(build)
    try:
        assert built_on == [front._thread]
        tokens, _, reason = await collect(front, PROMPTS[0], greedy(4))
    finally:
        await front.shutdown()  # the sync reference needs the engine to itself: the step thread could step it too
    assert tokens == reference(front.engine, PROMPTS[0], greedy(4)) and reason == "length"


def test_what_the_build_function_raises_is_raised_by_the_constructor(tmp_path: Path) -> None:
    def build() -> LLMEngine:
        return LLMEngine(load_model(str(tmp_path / "missing-model"), device="cpu"))

    with pytest.raises(ModelNotFoundError, match="missing-model"):
        AsyncLLMEngine(build)
