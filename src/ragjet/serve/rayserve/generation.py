"""The generation deployment: one native engine per replica (paged KV, continuous batching, prefix cache), streamed
to the ingress through a Ray Serve handle.

A replica batches every request the routers send it into one engine, so a replica is the unit of both throughput
and cache: `affinity.py` decides which requests share one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ray import serve

from ragjet.llm.backends.base import TextDelta
from ragjet.llm.backends.native import NativeBackend
from ragjet.serve.rayserve.coalesce import coalesced

if TYPE_CHECKING:
    from ragjet.config import LLMSettings
    from ragjet.llm.engine.outputs import EngineStats
    from ragjet.llm.sampling_params import SamplingParams
    from ragjet.llm.segments import PromptSegments
    from ragjet.llm.tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class RemoteDelta:
    """One item of a generation stream: a delta, or (last) the replica's engine snapshot after the request."""

    replica_id: str  # the Ray Serve replica that generated it
    delta: TextDelta | None = None
    stats: EngineStats | None = None


class GenerationServer:
    """A Ray Serve replica hosting `NativeBackend`; the ingress reaches it through `RayGenerationBackend`."""

    def __init__(self, llm: LLMSettings, stream_interval_s: float = 0.0):
        """Load the model and start the engine thread (seconds; Ray reports the replica healthy afterwards).
        `stream_interval_s`: deltas generated within it travel as one message (`coalesce.py`)."""
        self.backend = NativeBackend.from_settings(llm)
        self.stream_interval_s = stream_interval_s
        self.replica_id = serve.get_replica_context().replica_id.unique_id

    def tokenizer(self) -> Tokenizer:
        """The engine's tokenizer, so the ingress templates and counts prompts without loading the model."""
        return self.backend.tokenizer

    async def stream(
        self, prompt: str | PromptSegments, params: SamplingParams, affinity_key: str | None = None
    ) -> AsyncGenerator[RemoteDelta, None]:
        """The engine's deltas, merged per `stream_interval_s`, then the replica's stats. `affinity_key` is read by
        the router, not here.

        The ingress cancelling the call (a client gone, a deadline passed) closes this generator, which aborts the
        request in the engine.
        """
        async with aclosing(coalesced(self.backend.stream(prompt, params), self.stream_interval_s)) as deltas:
            async for delta in deltas:
                yield RemoteDelta(self.replica_id, delta=delta)
        yield RemoteDelta(self.replica_id, stats=self.backend.stats())

    def stats(self) -> EngineStats:
        return self.backend.stats()

    async def __del__(self) -> None:
        """Ray Serve calls this on a graceful stop: in-flight requests finish, then the engine stops."""
        await self.backend.close()
