"""The follower processes of a tensor-parallel engine (llm.tensor_parallel_size > 1).

Rank 0 lives in the serving process and runs the engine; ranks 1..N-1 are started here, each in a fresh process
(spawn: no CUDA or OpenMP state is inherited), load the same model, keep their shard, and then run whatever
forward rank 0 broadcasts until it broadcasts None (at engine shutdown). A follower that fails takes the group
down with it: rank 0's next collective raises, and the request in that step fails with the error.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import torch

from ragjet.config import LLMSettings
from ragjet.llm import parallel
from ragjet.llm.engine.config import EngineConfig
from ragjet.llm.loaders import LoadedModel

log = logging.getLogger(__name__)

Load = Callable[[LLMSettings, torch.device, int], LoadedModel]  # (settings, device, rank) -> that rank's shard


def rank_device(device: torch.device, rank: int) -> torch.device:
    """Rank r's device: GPU r on CUDA, the CPU otherwise."""
    return torch.device("cuda", rank) if device.type == "cuda" else device


def start_followers(settings: LLMSettings, device: torch.device, load: Load,
                    config: EngineConfig) -> tuple[str, list[BaseProcess]]:  # fmt: skip
    """Start ranks 1..N-1; returns the rendezvous address rank 0 joins with, and the processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        init_method = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    context = multiprocessing.get_context("spawn")
    followers: list[BaseProcess] = [context.Process(target=follow, args=(settings.model_dump_json(), str(device), rank,
                                                      init_method, load, config),
                                 name=f"ragjet-tp-rank{rank}", daemon=True)
                 for rank in range(1, settings.tensor_parallel_size)]  # fmt: skip
    for process in followers:
        process.start()
    return init_method, followers


def follow(settings_json: str, device: str, rank: int, init_method: str, load: Load, config: EngineConfig) -> None:
    """A follower's life: join the group, load and shard the model, run rank 0's forwards until None."""
    from ragjet.llm.engine.model_runner import ModelRunner

    settings = LLMSettings.model_validate_json(settings_json)
    world_size = settings.tensor_parallel_size
    parallel.init_tensor_parallel(rank, world_size, init_method)
    loaded = load(settings, rank_device(torch.device(device), rank), rank)
    blocks = int(parallel.from_leader())  # type: ignore[call-overload]
    runner = ModelRunner(loaded, config, blocks * config.block_size, leader_blocks=blocks)
    with torch.inference_mode():
        while (inputs := parallel.from_leader()) is not None:
            runner._forward(inputs)  # type: ignore[arg-type]
    parallel.leave_tensor_parallel()
    log.info("tensor-parallel rank %d stopped", rank)
