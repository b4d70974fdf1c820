"""How big the KV pool may be, and where the rest of the memory goes.

On CUDA the pool gets what is left of ``gpu_memory_utilization`` x the device's total memory once the memory
in use before the engine (other processes, the embedder, the vector index), the weights and the activations
of the largest step are counted: the activations are measured by running one forward of
``max_num_batched_tokens`` tokens at start (vLLM's method). On the CPU the pool is min(2 GiB, 10% of RAM)
unless ``kv_cache_memory_gb`` says otherwise. A pool that cannot hold one sequence of ``max_model_len``
tokens is an error naming the numbers and what to change, never a silent cap; a pool larger than every
running sequence at full length could use is trimmed to that (and logged).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ragjet.llm.layers.attention import uncached_metadata

log = logging.getLogger(__name__)

CPU_CACHE_CAP_BYTES = 2 << 30  # an auto-sized CPU pool stays below this and below 10% of RAM
MIB = 2**20


class KVCacheTooSmallError(ValueError):
    """The settings leave the KV pool less than one full-length sequence needs."""


@dataclass(frozen=True, slots=True)
class MemorySplit:
    """Bytes of the engine's device (GPU memory, or RAM on the CPU); reported by doctor and /metrics."""

    device: str
    total: int  # the device's memory
    limit: int  # what the engine may fill: total x gpu_memory_utilization (CUDA), the pool's budget (CPU)
    other: int  # in use before the engine loaded: other processes, the embedder, the index (CUDA)
    weights: int
    activations: int  # peak of the largest step beyond the weights (measured on CUDA, 0 on the CPU)
    kv_cache: int
    num_blocks: int

    def as_dict(self) -> dict[str, int | str]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def plan_kv_cache(
    *, device: str, total: int, limit: int, other: int, weights: int, activations: int, bytes_per_block: int,
    blocks_per_seq: int, blocks_wanted: int, limit_is_pool: bool,
) -> MemorySplit:  # fmt: skip
    """The pool that fits: ``limit`` less what is already spoken for (``limit_is_pool``: ``limit`` is the pool's
    own size: kv_cache_memory_gb, or the CPU's budget); at most ``blocks_wanted``; KVCacheTooSmallError below
    ``blocks_per_seq``."""
    available = limit if limit_is_pool else limit - other - weights - activations
    num_blocks = max(0, available) // bytes_per_block
    if num_blocks < blocks_per_seq:
        spent = "" if limit_is_pool else (f" after weights {weights / MIB:,.0f} MiB, activations "
                                          f"{activations / MIB:,.0f} MiB and {other / MIB:,.0f} MiB in use by others")
        raise KVCacheTooSmallError(
            f"the KV cache gets {max(0, available) / MIB:,.0f} MiB of {limit / MIB:,.0f} MiB{spent}: {num_blocks} "
            f"blocks, and one sequence of llm.max_model_len tokens needs {blocks_per_seq} "
            f"({blocks_per_seq * bytes_per_block / MIB:,.0f} MiB). Lower llm.max_model_len or "
            "llm.max_num_batched_tokens, raise llm.gpu_memory_utilization or llm.kv_cache_memory_gb, or use a "
            "smaller model"
        )
    if num_blocks > blocks_wanted:
        log.info("KV cache: %d blocks fit, %d hold every sequence at full length; allocating those",
                 num_blocks, blocks_wanted)  # fmt: skip
        num_blocks = blocks_wanted
    return MemorySplit(device, total, limit, other, weights, activations, num_blocks * bytes_per_block, num_blocks)


def describe_budget(device: torch.device, kv_cache_memory_gb: float, gpu_memory_utilization: float) -> str:
    """How the KV pool will be sized on ``device``, for `ragjet doctor` (the engine logs and reports the result)."""
    if kv_cache_memory_gb > 0:
        return f"{kv_cache_memory_gb:g} GiB (llm.kv_cache_memory_gb)"
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return (f"{gpu_memory_utilization:g} x {total / 2**30:.1f} GiB, less other processes' use, the weights and "
                "the activations of a max_num_batched_tokens step (measured at start)")  # fmt: skip
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{min(CPU_CACHE_CAP_BYTES, ram // 10) / 2**30:.2f} GiB: min(2 GiB, 10% of {ram / 2**30:.1f} GiB RAM)"


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def device_budget(
    model: torch.nn.Module, device: torch.device, kv_cache_memory_gb: float, gpu_memory_utilization: float,
    max_num_batched_tokens: int, max_num_seqs: int,
) -> dict[str, int | bool]:  # fmt: skip
    """plan_kv_cache's measurements for ``device``: total, limit, other, weights, activations, limit_is_pool."""
    weights, explicit = weight_bytes(model), kv_cache_memory_gb > 0
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        other = total - free - torch.cuda.memory_reserved(device)  # not torch's: other processes, CUDA context
        activations = 0 if explicit else profile_activations(model, device, max_num_batched_tokens, max_num_seqs)
        limit = int(kv_cache_memory_gb * 2**30) if explicit else int(total * gpu_memory_utilization)
        return dict(total=total, limit=limit, other=other, weights=weights, activations=activations,
                    limit_is_pool=explicit)  # fmt: skip
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = int(kv_cache_memory_gb * 2**30) if explicit else min(CPU_CACHE_CAP_BYTES, total // 10)
    return dict(total=total, limit=limit, other=0, weights=weights, activations=0, limit_is_pool=True)


@torch.inference_mode()
def profile_activations(model: torch.nn.Module, device: torch.device, num_tokens: int, num_seqs: int) -> int:
    """Peak memory of one forward over ``num_tokens`` tokens (and logits for ``num_seqs`` rows) beyond what was
    allocated before it: the most any step allocates besides the KV pool."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    ids = torch.zeros(num_tokens, dtype=torch.long, device=device)
    hidden = model(ids, torch.arange(num_tokens, device=device), uncached_metadata([num_tokens], device))
    model.compute_logits(hidden[: min(num_seqs, num_tokens)])  # type: ignore[operator]
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del hidden
    torch.cuda.empty_cache()
    return peak
