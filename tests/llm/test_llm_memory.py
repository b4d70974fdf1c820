"""KV pool sizing: the device's memory split between others, weights, activations and the pool; too small a pool
is an error naming the numbers, a pool bigger than needed is trimmed; the engine reports the split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.engine.memory import KVCacheTooSmallError, MemorySplit, plan_kv_cache, weight_bytes
from ragjet.llm.loaders import load_model

GIB, MIB = 2**30, 2**20
H100 = dict(device="cuda:0", total=80 * GIB, limit=68 * GIB)  # 0.85 of 80 GiB


def test_the_pool_gets_what_the_limit_leaves_after_others_weights_and_activations() -> None:
    split = plan_kv_cache(**H100, other=2 * GIB, weights=16 * GIB, activations=4 * GIB, bytes_per_block=2 * MIB,
                          blocks_per_seq=256, blocks_wanted=10**9, limit_is_pool=False)  # fmt: skip
    assert split.kv_cache == 46 * GIB and split.num_blocks == 46 * GIB // (2 * MIB)
    assert split.as_dict() == {"device": "cuda:0", "total": 80 * GIB, "limit": 68 * GIB, "other": 2 * GIB,
                               "weights": 16 * GIB, "activations": 4 * GIB, "kv_cache": 46 * GIB,
                               "num_blocks": 23552}  # fmt: skip


def test_a_pool_bigger_than_every_sequence_needs_is_trimmed() -> None:
    split = plan_kv_cache(device="cpu", total=24 * GIB, limit=2 * GIB, other=0, weights=0, activations=0,
                          bytes_per_block=MIB, blocks_per_seq=16, blocks_wanted=100, limit_is_pool=True)  # fmt: skip
    assert split.num_blocks == 100 and split.kv_cache == 100 * MIB


def test_settings_that_cannot_fit_one_sequence_are_an_error_saying_what_to_change() -> None:
    with pytest.raises(KVCacheTooSmallError) as error:
        plan_kv_cache(**H100, other=2 * GIB, weights=60 * GIB, activations=5 * GIB, bytes_per_block=2 * MIB,
                      blocks_per_seq=4096, blocks_wanted=10**9, limit_is_pool=False)  # fmt: skip
    message = str(error.value)
    assert "1,024 MiB of 69,632 MiB after weights 61,440 MiB, activations 5,120 MiB" in message
    assert "needs 4096 (8,192 MiB)" in message and "llm.max_model_len" in message
    assert "gpu_memory_utilization" in message
    with pytest.raises(KVCacheTooSmallError, match="the KV cache gets 0 MiB"):  # activations alone overflow it
        plan_kv_cache(**H100, other=0, weights=60 * GIB, activations=10 * GIB, bytes_per_block=2 * MIB,
                      blocks_per_seq=1, blocks_wanted=10, limit_is_pool=False)  # fmt: skip


def test_the_engine_sizes_its_pool_and_reports_the_split(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)
    bytes_per_block = 2 * 2 * 4 * 2 * 16 * 4  # k+v, 2 layers, 4 tokens, 2 kv heads, head_dim 16, fp32
    engine = LLMEngine(loaded, EngineConfig(max_model_len=64, block_size=4, kv_cache_memory_gb=40 * bytes_per_block
                                            / GIB))  # fmt: skip
    memory = engine.stats().memory
    assert memory["num_blocks"] == 40 and memory["kv_cache"] == 40 * bytes_per_block
    assert memory["weights"] == weight_bytes(loaded.model) > 0 and memory["device"] == "cpu"
    with pytest.raises(KVCacheTooSmallError, match="needs 16"):  # 64 tokens need 16 blocks of 4
        LLMEngine(loaded, EngineConfig(max_model_len=64, block_size=4, kv_cache_memory_gb=8 * bytes_per_block / GIB))
    assert isinstance(engine.model_runner.memory, MemorySplit)
