"""The engine's own frozen config, built from `LLMSettings` at the edge (pydantic stays out of the engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_num_seqs: int = 32  # sequences in one forward
    max_num_batched_tokens: int = 4096  # tokens in one forward: decodes, then prompt chunks while they fit
    max_model_len: int = 4096  # prompt + output, capped by the model's own context length
    block_size: int = 16  # tokens per KV block
    kv_cache_memory_gb: float = 0.0  # 0 = auto (memory.py): what the GPU has left, or min(2 GiB, 10% RAM) on CPU
    gpu_memory_utilization: float = 0.85  # of the GPU's total memory the engine may fill (weights, activations, KV)
    max_waiting: int = 256  # queued requests beyond which add_request refuses (EngineOverloadedError)
    enable_prefix_caching: bool = True
    num_speculative_tokens: int = 3  # prompt-lookup draft per greedy decode step (0 = off)
    max_speculative_seqs: int = 4  # draft only in decode steps of at most this many sequences
    tensor_parallel_size: int = 1  # ranks the model is sharded over (llm/parallel.py); rank 0 runs this engine
    cpu_kernels: bool = True  # on the CPU: build/load the fused kernels (llm/kernels) at start, for the compute dtype
    fused_cpu_decode: bool = True  # with cpu_kernels: decode steps' decoder layers as one op (models/cpu_decode.py)
    # "exact": K/V reused only for true prefixes (prefix caching); "blend": retrieved chunks' K/V reused at any
    # position with a selective recompute (chunk_reuse.py), held in a host-memory cache of chunk_cache_gb GiB.
    chunk_reuse: str = "exact"
    chunk_cache_gb: float = 1.0
    chunk_recompute_tokens: int = 4  # leading tokens of each reused chunk computed anyway

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len", "block_size", "max_waiting"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.num_speculative_tokens < 0 or self.num_speculative_tokens > self.block_size:
            raise ValueError("num_speculative_tokens must be in [0, block_size]")
        if self.chunk_reuse not in ("exact", "blend"):
            raise ValueError(f"chunk_reuse must be 'exact' or 'blend', got {self.chunk_reuse!r}")
        if self.chunk_reuse == "blend" and self.tensor_parallel_size > 1:
            raise ValueError("chunk_reuse 'blend' runs on one rank only: set tensor_parallel_size 1 or chunk_reuse "
                             "'exact'")  # fmt: skip
        if self.chunk_cache_gb < 0 or self.chunk_recompute_tokens < 0:
            raise ValueError("chunk_cache_gb and chunk_recompute_tokens must be >= 0")
        if not 0 < self.gpu_memory_utilization <= 1 or self.kv_cache_memory_gb < 0:
            raise ValueError("gpu_memory_utilization must be in (0, 1] and kv_cache_memory_gb >= 0")
