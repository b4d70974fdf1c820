"""The in-process backend: our own engine (paged KV, continuous batching) behind the asyncio front."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING

from ragjet.llm.backends.base import LLMBackend, Messages, TextDelta
from ragjet.llm.engine.async_engine import AsyncLLMEngine

if TYPE_CHECKING:
    from ragjet.config import LLMSettings
    from ragjet.llm.engine.outputs import EngineStats
    from ragjet.llm.sampling_params import SamplingParams
    from ragjet.llm.tokenizer import Tokenizer


class NativeBackend(LLMBackend):
    name = "native"

    def __init__(self, engine: AsyncLLMEngine, tokenizer: Tokenizer):
        self.engine = engine
        self.tokenizer = tokenizer

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> NativeBackend:
        """Load `settings.model` and start the engine thread (seconds: call it off the event loop).

        Errors: ModelNotFoundError for an unknown name or path, ValueError for an unusable model file.
        """
        from ragjet.device import default_dtype, pick_device
        from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
        from ragjet.llm.loaders import load_model
        from ragjet.llm.quantize import quantize_model

        device = pick_device(settings.device)
        loaded = load_model(settings.model, device=device, dtype=default_dtype(device, settings.dtype))
        mode = settings.quantization
        quantize_model(loaded.model, ("int8" if device.type == "cpu" else "none") if mode == "auto" else mode)
        config = EngineConfig(
            max_num_seqs=settings.max_num_seqs,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_model_len=settings.max_model_len,
            block_size=settings.block_size,
            kv_cache_memory_gb=settings.kv_cache_memory_gb,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_waiting=settings.max_waiting,
            enable_prefix_caching=settings.enable_prefix_caching,
        )
        return cls(AsyncLLMEngine(LLMEngine(loaded, config)), loaded.tokenizer)

    async def stream(self, prompt: str | Messages, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        text = prompt if isinstance(prompt, str) else self.format_chat(prompt)
        async with aclosing(self.engine.stream_text(text, params)) as deltas:
            async for delta in deltas:
                yield delta

    def format_chat(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def stats(self) -> EngineStats:
        return self.engine.stats()

    async def close(self) -> None:
        await self.engine.shutdown(drain=True)
