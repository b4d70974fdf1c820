"""Tensor parallelism on the CPU (gloo): two processes, each with half of every layer's heads and MLP units, give
the tokens one process gives alone (greedy and seeded sampling), and a model whose heads do not divide is refused."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tp_worker import generate

from ragjet.llm.loaders import load_model
from ragjet.llm.parallel import RowParallelLinear, shard_model

WORKER = Path(__file__).with_name("tp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_give_the_tokens_of_one_process(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = str(tiny_model_dirs["llama"])
    alone = generate(model_dir, rank=0, world_size=1)
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, str(WORKER), model_dir, str(rank), "2", str(port),
                               str(tmp_path / f"rank{rank}.json")]) for rank in range(2)]  # fmt: skip
    assert [p.wait(timeout=240) for p in ranks] == [0, 0]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert results[0] == results[1] == alone


def test_each_rank_holds_its_share_and_uneven_splits_are_refused(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)
    whole = loaded.model.model.layers[0].self_attn.qkv_proj.weight.shape
    shard = shard_model(loaded, rank=1, world_size=2)
    attn, mlp = shard.model.model.layers[0].self_attn, shard.model.model.layers[0].mlp
    assert attn.qkv_proj.weight.shape == (whole[0] // 2, whole[1]) and attn.attn.num_kv_heads == 1
    assert isinstance(attn.o_proj, RowParallelLinear) and isinstance(mlp.down_proj, RowParallelLinear)
    assert shard.config.num_kv_heads == 1 and shard.config.intermediate_size == 64
    with pytest.raises(ValueError, match="must divide the model's num_kv_heads"):
        shard_model(load_model(str(tiny_model_dirs["llama"]), device="cpu"), rank=0, world_size=4)
