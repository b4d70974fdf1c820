"""An LLM backend whose engine is a Ray Serve generation deployment: the ingress's pipeline calls it like any other
backend, so its overlap (retrieval of one request during another's decode), deadlines, fallbacks and metrics are the
in-process ones, unchanged.

Across the boundary: prompts are templated and counted here with the engine's own tokenizer (fetched once), so only
the finished prompt and its sampling parameters travel; deltas stream back through the handle; closing the stream
(a client gone, a deadline passed) cancels the call, which aborts the request in the replica's engine. A replica that
dies mid-stream (Ray restarts it) does not lose the answer: the stream resumes on a live replica with the text so
far appended to the prompt, as the CPU fallback of a failing GPU does (`llm/backends/native.py`); past
`ray.max_resumes` it is a BackendError, which the pipeline answers extractively.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, cast

from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from ragjet.llm.backends.base import BackendError, LLMBackend, Messages, Prompt, TextDelta
from ragjet.llm.engine.outputs import EngineStats
from ragjet.llm.segments import PromptSegments
from ragjet.serve.rayserve.affinity import affinity_key

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

    from ragjet.config import RaySettings
    from ragjet.llm.sampling_params import SamplingParams
    from ragjet.llm.tokenizer import Tokenizer
    from ragjet.serve.rayserve.generation import RemoteDelta

RESUMED = "generation replica lost: resumed on another replica"
REPLICA_LOST = (RayActorError, WorkerCrashedError)  # the replica's process died or became unreachable


class ReplicaLostError(BackendError):
    """The generation replica serving a stream died or became unreachable."""


class RayGenerationBackend(LLMBackend):
    name = "ray"

    def __init__(self, handle: DeploymentHandle, tokenizer: Tokenizer, settings: RaySettings):
        self.handle = handle.options(stream=True)
        self.tokenizer = tokenizer
        self.is_affine = settings.affinity
        self.max_resumes = settings.max_resumes
        self._stats: dict[str, EngineStats] = {}  # each replica's engine after its last finished request

    @classmethod
    def connect(cls, handle: DeploymentHandle, settings: RaySettings) -> RayGenerationBackend:
        """Fetch the engine's tokenizer from a generation replica (blocks until one is up: call it off the loop)."""
        return cls(handle, handle.tokenizer.remote().result(), settings)

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        """`PromptSegments` travel as they are (the replica's engine may reuse their chunks' K/V); a resumed stream
        sends the text, the generated part appended."""
        if isinstance(prompt, PromptSegments):
            remote: str | PromptSegments = prompt
            text = prompt.text
        else:
            text = remote = prompt if isinstance(prompt, str) else self.format_chat(prompt)
        key = affinity_key(text) if self.is_affine else None
        generated: list[str] = []
        num_tokens, num_resumes, tag = 0, 0, None
        while True:
            rest = dataclasses.replace(params, max_tokens=params.max_tokens - num_tokens)
            try:
                async for delta in self._call(remote if num_resumes == 0 else text + "".join(generated), rest, key):
                    generated.append(delta.text)
                    num_tokens += delta.num_tokens
                    yield delta if tag is None else dataclasses.replace(delta, fallback=tag)
                return
            except ReplicaLostError:
                if num_resumes >= self.max_resumes:
                    raise
                num_resumes, tag = num_resumes + 1, RESUMED
            if num_tokens >= params.max_tokens:
                yield TextDelta("", 0, finish_reason="length", fallback=tag)
                return

    async def _call(
        self, prompt: str | PromptSegments, params: SamplingParams, key: str | None
    ) -> AsyncGenerator[TextDelta, None]:
        """One generation call's deltas; the replica's own errors (overload, a prompt too long, bad input) are
        re-raised as themselves, a lost replica as ReplicaLostError."""
        call = cast(
            "DeploymentResponseGenerator[RemoteDelta]", self.handle.stream.remote(prompt, params, affinity_key=key)
        )
        try:
            async for remote in call:
                if remote.stats is not None:
                    self._stats[remote.replica_id] = remote.stats
                elif remote.delta is not None:
                    yield remote.delta
        except RayTaskError as exc:
            raise (exc.cause if isinstance(exc.cause, Exception) else BackendError(str(exc))) from None
        except REPLICA_LOST as exc:
            raise ReplicaLostError(f"generation replica lost: {type(exc).__name__}") from exc
        finally:
            call.cancel()  # a no-op once the stream has ended; otherwise it aborts the request in the engine

    def format_chat(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def stats(self) -> EngineStats:
        """The generation replicas' engines summed, each as of its last finished request (a replica that has not
        finished one yet is not counted)."""
        counts = [f.name for f in dataclasses.fields(EngineStats) if f.type in ("int", int)]
        snapshots = list(self._stats.values())
        return EngineStats(**{name: sum(getattr(s, name) for s in snapshots) for name in counts})  # type: ignore[arg-type]

    async def close(self) -> None:
        """Nothing to release here: Ray Serve owns the generation replicas and stops them with the application."""
