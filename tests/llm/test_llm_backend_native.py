"""The native backend built by the factory from settings, on a real tiny model directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Needs the engine (SamplingParams, LLMEngine, loaders): skip until it lands.
for _module in ("ragjet.llm.sampling_params", "ragjet.llm.engine.llm_engine", "ragjet.llm.tokenizer"):
    pytest.importorskip(_module)

from ragjet.config import LLMSettings  # noqa: E402
from ragjet.llm.backends import LLMBackend, create_backend  # noqa: E402
from ragjet.llm.backends.native import NativeBackend  # noqa: E402
from ragjet.llm.loaders import load_model  # noqa: E402
from ragjet.llm.sampling_params import SamplingParams  # noqa: E402
from ragjet.models import ModelNotFoundError  # noqa: E402

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why does bread rise?"}]


@pytest.fixture
async def backend(tiny_llama_dir: Path) -> AsyncIterator[LLMBackend]:
    backend = create_backend(LLMSettings(model=str(tiny_llama_dir), device="cpu", max_model_len=256, block_size=4))
    yield backend
    await backend.close()


async def test_factory_builds_native_with_the_models_tokenizer(backend: LLMBackend, tiny_llama_dir: Path) -> None:
    tokenizer = load_model(str(tiny_llama_dir), device="cpu").tokenizer
    assert isinstance(backend, NativeBackend) and backend.name == "native"
    assert backend.format_chat(MESSAGES) == tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    assert backend.count_tokens("Sourdough bread rises") == len(tokenizer.encode("Sourdough bread rises"))


async def test_messages_and_their_templated_text_give_the_same_completion(backend: LLMBackend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, logprobs=True)
    from_messages = await backend.complete(MESSAGES, params)
    from_text = await backend.complete(backend.format_chat(MESSAGES), params)
    assert from_messages.text == from_text.text
    assert from_messages.num_completion_tokens == 8 and from_messages.finish_reason == "length"
    assert from_messages.num_prompt_tokens == backend.count_tokens(backend.format_chat(MESSAGES))
    assert from_messages.logprobs is not None and len(from_messages.logprobs) == 8


async def test_streamed_deltas_add_up_to_the_completion(backend: LLMBackend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    deltas = [d async for d in backend.stream(MESSAGES, params)]
    completion = await backend.complete(MESSAGES, params)
    assert "".join(d.text for d in deltas) == completion.text
    assert sum(d.num_tokens for d in deltas) == 6
    assert [d.finish_reason for d in deltas][-1] == "length"
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert backend.stats().num_used_blocks == 0


def test_unknown_model_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        create_backend(LLMSettings(model=str(missing), device="cpu"))


def test_every_engine_setting_reaches_the_engine_config() -> None:
    """Each EngineConfig field comes from the LLM setting of its name: a changed setting shows up in the engine's
    config (a field the engine adds without a setting fails here, as would one the backend forgot to pass)."""
    import dataclasses

    from ragjet.llm.backends.native import engine_config
    from ragjet.llm.engine.config import EngineConfig

    defaults = EngineConfig()
    changed: dict[str, object] = {"enable_prefix_caching": False, "cpu_kernels": False, "fused_cpu_decode": False,
                                  "gpu_memory_utilization": 0.5}
    for f in dataclasses.fields(EngineConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, str):
            changed.setdefault(f.name, value)  # the one str field, chunk_reuse, is checked below (blend needs 1 rank)
        elif not isinstance(value, bool):
            changed.setdefault(f.name, value + 1)
    config = engine_config(LLMSettings(**changed))
    assert dataclasses.asdict(config) == changed
    assert engine_config(LLMSettings(**changed), kv_cache_memory_gb=0.0).kv_cache_memory_gb == 0.0
    assert engine_config(LLMSettings(chunk_reuse="blend")).chunk_reuse == "blend"


async def test_a_tensor_parallel_backend_answers_as_one_process(tiny_llama_dir: Path) -> None:
    """tensor_parallel_size=2 on the CPU: rank 0 in this process, rank 1 spawned; same greedy text, and rank 1's
    process ends with the backend."""
    import multiprocessing

    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    settings = dict(model=str(tiny_llama_dir), device="cpu", max_model_len=256, block_size=4)
    alone = create_backend(LLMSettings(**settings))
    expected = (await alone.complete(MESSAGES, params)).text
    await alone.close()
    sharded = create_backend(LLMSettings(**settings, tensor_parallel_size=2))
    try:
        assert [p.name for p in multiprocessing.active_children()] == ["ragjet-tp-rank1"]
        completions = [await sharded.complete(MESSAGES, params) for _ in range(2)]
        assert [c.text for c in completions] == [expected, expected]
    finally:
        await sharded.close()
    for process in multiprocessing.active_children():
        process.join(timeout=30)
    assert multiprocessing.active_children() == []
