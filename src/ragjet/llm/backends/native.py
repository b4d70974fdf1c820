"""The in-process backend: our own engine (paged KV, continuous batching) behind the asyncio front.

On a CUDA device the backend also fails over to the CPU (see cpu_fallback.py): a request that hits an
out-of-memory or a CUDA error is finished on a CPU twin of the engine, and later requests go there too
until the GPU passes a probe again. Deltas produced on the CPU carry the reason in `TextDelta.fallback`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING

import torch

from ragjet.device import DeviceHealth, is_device_failure, probe_device
from ragjet.llm.backends.base import LLMBackend, Messages, Prompt, TextDelta
from ragjet.llm.backends.cpu_fallback import RETRIED_ON_CPU, SERVED_ON_CPU, CpuFallback
from ragjet.llm.engine.async_engine import AsyncLLMEngine
from ragjet.llm.engine.config import EngineConfig
from ragjet.llm.segments import PromptSegments

if TYPE_CHECKING:
    from ragjet.config import LLMSettings
    from ragjet.llm.engine.llm_engine import LLMEngine
    from ragjet.llm.engine.outputs import EngineStats
    from ragjet.llm.loaders import LoadedModel
    from ragjet.llm.sampling_params import SamplingParams
    from ragjet.llm.tokenizer import Tokenizer


class NativeBackend(LLMBackend):
    name = "native"

    def __init__(self, engine: AsyncLLMEngine, tokenizer: Tokenizer, cpu_fallback: CpuFallback | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.cpu_fallback = cpu_fallback  # None on a CPU device: there is nowhere to fall back to

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> NativeBackend:
        """Load `settings.model` and start the engine thread (seconds: call it off the event loop).

        Errors: ModelNotFoundError for an unknown name or path, ValueError for an unusable model file.
        """
        from ragjet.device import pick_device

        device = pick_device(settings.device)
        engine, tokenizer = build_engine(settings, device)
        fallback = None
        if device.type == "cuda":
            cpu = torch.device("cpu")
            health = DeviceHealth(functools.partial(probe_device, device))
            fallback = CpuFallback(lambda: build_engine(settings, cpu)[0], health)
            if settings.cpu_twin == "prepare" or (settings.cpu_twin == "auto" and twin_fits(settings.model)):
                fallback.prepare_in_background()
        return cls(engine, tokenizer, fallback)

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        """The engine gets `PromptSegments` as they are (in blend mode it reuses their chunks' K/V); the CPU twin,
        which starts cold, gets the text."""
        segments: PromptSegments | None = None
        if isinstance(prompt, PromptSegments):
            segments, text = prompt, prompt.text
        else:
            text = prompt if isinstance(prompt, str) else self.format_chat(prompt)
        fallback = self.cpu_fallback
        cpu_engine = None if fallback is None else await fallback.engine_while_unhealthy()
        if cpu_engine is not None:
            async with aclosing(_tagged(cpu_engine.stream_text(text, params), SERVED_ON_CPU)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        generated, num_tokens = [], 0
        try:
            async with aclosing(self.engine.stream_text(segments or text, params)) as deltas:
                async for delta in deltas:
                    generated.append(delta.text)
                    num_tokens += delta.num_tokens
                    yield delta
            return
        except Exception as exc:
            if fallback is None or not is_device_failure(exc):
                raise
            cpu_engine = await fallback.fail_over(exc)
        # Finish on the CPU what the GPU began: the text so far extends the prompt, the budget shrinks by it.
        if num_tokens >= params.max_tokens:
            yield TextDelta("", 0, finish_reason="length", fallback=RETRIED_ON_CPU)
            return
        rest = dataclasses.replace(params, max_tokens=params.max_tokens - num_tokens)
        async with aclosing(_tagged(cpu_engine.stream_text(text + "".join(generated), rest), RETRIED_ON_CPU)) as deltas:
            async for delta in deltas:
                yield delta

    def format_chat(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def stats(self) -> EngineStats:
        fallback = self.cpu_fallback
        if fallback is not None and fallback.is_on_cpu and fallback.cpu_engine is not None:
            return fallback.cpu_engine.stats()
        return self.engine.stats()

    async def close(self) -> None:
        await self.engine.shutdown(drain=True)
        if self.cpu_fallback is not None:
            await self.cpu_fallback.close()


def twin_fits(model: str) -> bool:
    """Whether a CPU twin of ``model`` (weights in fp32 plus a quantised copy: ~3x the files, taken as an upper
    bound) fits in half the memory the host has available now."""
    from ragjet.models import ModelNotFoundError, resolve_model

    try:
        source = resolve_model(model)
    except ModelNotFoundError:
        return False
    files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
    return 3 * sum(p.stat().st_size for p in files) < available_ram() // 2


def available_ram() -> int:
    """Bytes the host can give without swapping (MemAvailable), or its physical memory where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kib * 1024
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def build_engine(settings: LLMSettings, device: torch.device) -> tuple[AsyncLLMEngine, Tokenizer]:
    """Load the model onto `device` and start an engine over it; the CPU twin of a GPU engine gets CPU choices
    (fp32 weights quantised as `auto` would on a CPU unless quantization is off, an automatically sized KV pool).
    The model is loaded on the engine's own thread (see async_engine.py for why)."""
    engine = AsyncLLMEngine(functools.partial(_load_engine, settings, device))
    return engine, engine.engine.tokenizer


def _load_engine(settings: LLMSettings, device: torch.device) -> LLMEngine:
    """The engine over `settings.model` on `device`; with tensor_parallel_size > 1 (and not as the CPU twin) this is
    rank 0, and the other ranks are started in processes of their own first (tp_workers.py)."""
    from ragjet.llm.engine.llm_engine import LLMEngine

    is_twin = _is_twin(settings, device)
    if device.type == "cpu" and not is_twin:
        _check_cpu_dtype(settings)
    if is_twin:  # one process on the CPU: no tensor parallelism there
        twin = settings.model_copy(update={"tensor_parallel_size": 1})
        return LLMEngine(load_rank(twin, device, 0), engine_config(twin, kv_cache_memory_gb=0.0))
    config = engine_config(settings)
    if settings.tensor_parallel_size > 1:
        from ragjet.llm import parallel
        from ragjet.llm.backends.tp_workers import rank_device, start_followers

        init_method, _ = start_followers(settings, device, load_rank, config)
        device = rank_device(device, 0)
        parallel.init_tensor_parallel(0, settings.tensor_parallel_size, init_method)
    return LLMEngine(load_rank(settings, device, 0), config)


def load_rank(settings: LLMSettings, device: torch.device, rank: int) -> LoadedModel:
    """`settings.model` loaded onto `device`, sharded for `rank` of tensor_parallel_size, quantised as set."""
    from ragjet.device import default_dtype
    from ragjet.llm.loaders import load_model
    from ragjet.llm.parallel import shard_model
    from ragjet.llm.quantize import auto_quantization, quantize_model

    is_twin = _is_twin(settings, device)
    dtype = default_dtype(device, "auto" if is_twin else settings.dtype)
    loaded = shard_model(load_model(settings.model, device=device, dtype=dtype), rank, settings.tensor_parallel_size)
    mode = settings.quantization
    if mode == "auto" or (is_twin and mode == "bf16"):
        mode = auto_quantization(device, loaded.source)
    quantize_model(loaded.model, mode, dense_prefill=settings.dense_prefill and device.type == "cpu")
    return loaded


def _is_twin(settings: LLMSettings, device: torch.device) -> bool:
    """Whether this engine is the CPU twin of a CUDA one: it then takes CPU choices, not the settings' GPU ones."""
    from ragjet.device import pick_device

    return device.type == "cpu" and pick_device(settings.device).type == "cuda"


def engine_config(settings: LLMSettings, **overrides: object) -> EngineConfig:
    """The engine's config: every EngineConfig field read from the setting of the same name, so a field added
    to the engine is a setting too (tests fail otherwise); `overrides` (None = keep the setting) win."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(EngineConfig)}
    values.update({name: value for name, value in overrides.items() if value is not None})
    return EngineConfig(**values)  # type: ignore[arg-type]


def _check_cpu_dtype(settings: LLMSettings) -> None:
    """A CPU model computing in bf16 without weight-only layers runs dense bf16 GEMMs: refused, before loading
    anything, where the CPU only emulates them. (Quantised layers in bf16 are what `auto` picks on AVX2.)"""
    from ragjet.hardware import require_bf16_gemm

    if settings.quantization == "bf16":
        require_bf16_gemm("llm.quantization = 'bf16'")
    elif settings.dtype == "bfloat16" and settings.quantization == "none":
        require_bf16_gemm("llm.dtype = 'bfloat16' with llm.quantization = 'none'")


async def _tagged(deltas: AsyncGenerator[TextDelta, None], reason: str) -> AsyncGenerator[TextDelta, None]:
    async with aclosing(deltas) as source:
        async for delta in source:
            yield dataclasses.replace(delta, fallback=reason)
