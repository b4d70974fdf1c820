"""One rank of a tensor-parallel engine, run as its own process by test_llm_tensor_parallel.py:
tp_worker.py MODEL_DIR RANK WORLD_SIZE PORT OUT_JSON. Writes the greedy and seeded tokens it generated."""

from __future__ import annotations

import json
import os
import sys

import torch

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.loaders import load_model
from ragjet.llm.parallel import init_tensor_parallel, leave_tensor_parallel, shard_model
from ragjet.llm.sampling_params import SamplingParams

PROMPTS = [[5, 17, 99, 42], [300, 7], list(range(11, 31)), [64] * 9]


def generate(model_dir: str, rank: int, world_size: int) -> dict[str, list[list[int]]]:
    loaded = shard_model(load_model(model_dir, device="cpu", dtype=torch.float32), rank, world_size)
    engine = LLMEngine(loaded, EngineConfig(max_model_len=256, block_size=4, max_num_batched_tokens=16))
    greedy = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    seeded = SamplingParams(temperature=0.8, top_p=0.9, seed=7, max_tokens=12, ignore_eos=True)
    return {"greedy": [o.token_ids for o in engine.generate(PROMPTS, greedy)],
            "seeded": [o.token_ids for o in engine.generate(PROMPTS[:2], seeded)]}  # fmt: skip


if __name__ == "__main__":
    model_dir, rank, world_size, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)  # two ranks share this machine's cores
    init_tensor_parallel(rank, world_size, f"tcp://127.0.0.1:{port}")
    tokens = generate(model_dir, rank, world_size)
    leave_tensor_parallel()
    with open(out, "w") as f:
        json.dump(tokens, f)
    # No interpreter teardown: with torch 2.13 a gloo process can still abort in it ("terminate called without an
    # active exception") after its work is done: 16 of 40 bare two-rank gloo runs without destroy_process_group,
    # and about 1 run of this test in 20 even with it. The test checks the tokens written above, not the teardown.
    os._exit(0)
