"""What the engine reports: per-request outputs as they stream, and engine-wide statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestOutput:
    request_id: str
    new_token_ids: list[int]  # tokens produced since the previous output of this request
    new_text: str
    token_ids: list[int]  # every generated token so far
    text: str
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | "timeout" once finished
    logprobs: list[float] | None  # of new_token_ids, when requested
    num_prompt_tokens: int
    num_cached_tokens: int  # prompt tokens served from the prefix cache
    num_reused_tokens: int = 0  # prompt tokens whose K/V came from the chunk cache (blend mode)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot for health checks and metrics; all zero for backends without a local engine."""

    num_running: int = 0
    num_waiting: int = 0
    num_used_blocks: int = 0
    num_free_blocks: int = 0
    num_total_blocks: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    num_preemptions: int = 0
    num_draft_tokens: int = 0  # speculative tokens scored
    num_accepted_draft_tokens: int = 0  # of those, kept (each saved a forward pass)
    chunk_cache_lookups: int = 0  # blend mode: chunks looked up in the chunk KV cache
    chunk_cache_hits: int = 0
    chunk_cache_entries: int = 0
    chunk_cache_bytes: int = 0
    memory: Mapping[str, int | str] = field(default_factory=dict)  # the engine's MemorySplit (memory.py), bytes
