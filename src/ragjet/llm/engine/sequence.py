"""One request as the engine tracks it: its tokens, its KV blocks and how far its text has been streamed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING

from ragjet.llm.sampling_params import SamplingParams
from ragjet.llm.segments import ChunkSpan
from ragjet.llm.tokenizer import IncrementalDecoder

if TYPE_CHECKING:
    from ragjet.llm.engine.chunk_reuse import ChunkImport


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


@dataclass(eq=False)
class Sequence:
    request_id: str
    token_ids: list[int]  # prompt, then every generated token
    num_prompt_tokens: int
    params: SamplingParams
    decoder: IncrementalDecoder
    max_len: int  # prompt + generated tokens never exceed this (the context window)
    deadline: float | None = None  # time.monotonic() after which the request finishes as "timeout"
    status: SequenceStatus = SequenceStatus.WAITING
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    num_scheduled_tokens: int = 0  # tokens the current step computes (a prefill chunk, or 1 when decoding)
    block_hashes: list[int] = field(default_factory=list)  # content keys of the prompt's full blocks
    num_registered_blocks: int = 0  # of those, blocks in the prefix cache (hits, or computed)
    num_cached_tokens: int = 0  # prompt tokens the prefix cache served at admission
    draft_ids: list[int] = field(default_factory=list)  # speculative tokens scored after token_ids this step
    # Blend mode (chunk_reuse.py): the prompt's retrieved chunks; the cached ones the next step imports, the
    # positions it computes (empty: an ordinary prefill), and the chunks to store once the prompt is computed.
    chunk_spans: list[ChunkSpan] = field(default_factory=list)
    pending_imports: list[ChunkImport] = field(default_factory=list)
    compute_positions: list[int] = field(default_factory=list)
    export_spans: list[ChunkSpan] = field(default_factory=list)
    num_reused_tokens: int = 0  # prompt tokens whose K/V came from the chunk cache
    finish_reason: str | None = None
    logprobs: list[float] = field(default_factory=list)
    text: str = ""  # decoded output, stop strings cut off
    num_emitted_chars: int = 0  # of `text`, already sent to the caller
    num_emitted_tokens: int = 0
    arrival: float = field(default_factory=time.monotonic)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_new_tokens(self) -> int:
        """Tokens not yet computed: the uncached prompt (or what chunks left of it), then one per decode step."""
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_prefill_chunk(self) -> bool:
        """This step computes part of the prompt but not its last token: nothing is sampled yet."""
        if self.compute_positions:  # a blend step computes the prompt's last token, whatever it skips
            return False
        return self.num_computed_tokens + self.num_scheduled_tokens < self.num_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
