"""What observability reads of a finished answer: small protocols that rag's Answer satisfies as it is.

obs is a leaf the pipeline feeds, so metrics and tracing name only the fields they read here and never
import the pipeline's types; `lint-imports` (pyproject.toml) keeps it that way.
"""

from __future__ import annotations

from typing import Protocol


class StageMillis(Protocol):
    """Milliseconds per stage of one request (rag's StageTimings); metrics and spans read `{stage}_ms`."""

    @property
    def embed_ms(self) -> float: ...
    @property
    def search_ms(self) -> float: ...
    @property
    def rerank_ms(self) -> float: ...
    @property
    def prompt_ms(self) -> float: ...
    @property
    def queue_ms(self) -> float: ...
    @property
    def prefill_ms(self) -> float: ...
    @property
    def decode_ms(self) -> float: ...
    @property
    def total_ms(self) -> float: ...


class ObservedAnswer(Protocol):
    """One answered request (rag's Answer), as metrics and spans see it."""

    @property
    def request_id(self) -> str: ...
    @property
    def timings(self) -> StageMillis: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def cached_prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def needs_review(self) -> bool: ...
    @property
    def degraded(self) -> str | None: ...  # why a fallback answered, None when none did
    @property
    def from_cache(self) -> bool: ...  # served from the answer cache
