"""An asyncio front for LLMEngine: one background thread steps the engine, callers stream their deltas.

The step thread sleeps on a condition while the engine has nothing to do. Each request owns an
asyncio.Queue on its caller's event loop; the step thread feeds it with `loop.call_soon_threadsafe`, so
many concurrent callers share one continuous batch without ever blocking the loop on model work.
A caller that stops iterating (break, cancellation, a client that went away) aborts its request, which
frees its KV blocks. Only the step thread changes the scheduler's queues and the block pool: an abort
from a caller's thread is queued and carried out before the next step, never in the middle of one.

Give it a function that builds the engine rather than a built one, and the model is loaded on the step
thread too, so on the CPU loading and stepping share one OpenMP thread team (see ragjet/cpu_threads.py).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragjet.llm.backends.base import Completion, CompletionBuilder, TextDelta
from ragjet.llm.engine.errors import RequestFailedError

if TYPE_CHECKING:
    from ragjet.llm.engine.llm_engine import EnginePrompt, LLMEngine
    from ragjet.llm.engine.outputs import EngineStats, RequestOutput
    from ragjet.llm.sampling_params import SamplingParams


class EngineStoppedError(RuntimeError):
    """The engine was shut down: it takes no new requests, and shutdown(drain=False) cut this one off."""


@dataclass(slots=True)
class _Channel:
    """Where the step thread sends one request's outputs: a queue living on its caller's event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[RequestOutput | BaseException]


class AsyncLLMEngine:
    """Serves an LLMEngine to asyncio callers; build it once per process and share it.

    `stream` and `generate` raise at submission (before any output) what `LLMEngine.add_request` raises:
    EngineOverloadedError when the waiting queue is full, PromptTooLongError, ValueError. A step that runs out of
    device memory fails only the request the engine dropped for it (RequestFailedError: the step's largest), in
    that request alone; any other exception in the step thread is raised in every request in flight then. The
    engine serves later requests either way.
    """

    engine: LLMEngine  # set by the step thread before the constructor returns

    def __init__(self, engine: LLMEngine | Callable[[], LLMEngine]):
        """`engine`, or a function that builds one on the step thread (see the module docstring); what
        it raises is raised here."""
        self._channels: dict[str, _Channel] = {}
        self._work = threading.Condition()  # guards _channels, _aborted and _stopping; wakes the step thread
        self._aborted: list[str] = []  # requests whose callers left, for the step thread to abort
        self._stopping = False
        self._drain = True
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(engine, started), name="ragjet-engine", daemon=True)
        self._thread.start()
        started.result()  # the step thread has set self.engine, or this raises what building it raised

    async def stream(
        self, prompt: EnginePrompt, params: SamplingParams, request_id: str | None = None
    ) -> AsyncGenerator[RequestOutput, None]:
        """The request's outputs (new tokens and text since the previous one); the last has `finished`."""
        request_id, channel = self._submit(prompt, params, request_id)
        finished = False
        try:
            while not finished:
                item = await channel.queue.get()
                if isinstance(item, BaseException):
                    finished = True  # the step thread already dropped this request
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                self.abort(request_id)

    async def stream_text(self, prompt: EnginePrompt, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        """`stream` as backend-neutral TextDeltas."""
        async with aclosing(self.stream(prompt, params)) as outputs:
            async for out in outputs:
                yield TextDelta(
                    text=out.new_text,
                    num_tokens=len(out.new_token_ids),
                    finish_reason=out.finish_reason if out.finished else None,
                    logprobs=out.logprobs,
                    num_prompt_tokens=out.num_prompt_tokens,
                    num_cached_tokens=out.num_cached_tokens + out.num_reused_tokens,  # not prefilled
                )

    async def generate(self, prompt: EnginePrompt, params: SamplingParams) -> Completion:
        builder = CompletionBuilder()
        async with aclosing(self.stream_text(prompt, params)) as deltas:
            async for delta in deltas:
                builder.add(delta)
        return builder.build()

    def abort(self, request_id: str) -> None:
        """Stop a request and free its KV blocks (before the next step); nothing happens if it already finished."""
        with self._work:
            if self._channels.pop(request_id, None) is None:
                return
            self._aborted.append(request_id)
            self._work.notify()

    def stats(self) -> EngineStats:
        return self.engine.stats()

    async def shutdown(self, drain: bool = True) -> None:
        """Refuse new requests, finish (drain=True) or cut off (False) the ones in flight, stop the thread."""
        with self._work:
            self._stopping = True
            self._drain = drain
            self._work.notify()
        await asyncio.to_thread(self._thread.join)

    def _submit(self, prompt: EnginePrompt, params: SamplingParams, request_id: str | None) -> tuple[str, _Channel]:
        request_id = request_id or uuid.uuid4().hex
        channel = _Channel(asyncio.get_running_loop(), asyncio.Queue())
        with self._work:
            if self._stopping:
                raise EngineStoppedError("the LLM engine is shut down and takes no new requests")
            if request_id in self._channels:
                raise ValueError(f"request id {request_id!r} is already in flight")
            # Registered before add_request so that no output can arrive without a channel to carry it.
            self._channels[request_id] = channel
            try:
                self.engine.add_request(prompt, params, request_id=request_id)
            except BaseException:
                del self._channels[request_id]
                raise
            self._work.notify()
        return request_id, channel

    def _run(self, engine: LLMEngine | Callable[[], LLMEngine], started: Future[None]) -> None:
        try:
            self.engine = engine() if callable(engine) else engine
        except BaseException as exc:  # noqa: BLE001 (raised in the constructor's thread)
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            self._step_loop()
        finally:
            self.engine.close()

    def _step_loop(self) -> None:
        while self._wait_for_work():
            try:
                outputs = self.engine.step()
            except RequestFailedError as failed:  # one request dropped to free memory; the others go on
                self._fail_request(failed.request_id, failed.cause)
                outputs = failed.outputs
            except Exception as exc:  # noqa: BLE001 (handed to the callers it concerns)
                self._fail_in_flight(exc)
                continue
            for out in outputs:
                self._deliver(out)

    def _wait_for_work(self) -> bool:
        """Sleep until the engine has work; False once the thread should end."""
        with self._work:
            while True:
                for request_id in self._aborted:
                    self.engine.abort_request(request_id)
                self._aborted.clear()
                if self._stopping and not self._drain:
                    self._fail_in_flight(EngineStoppedError("the LLM engine was shut down mid-request"))
                    return False
                if self.engine.has_unfinished():
                    return True
                if self._stopping:
                    return False
                self._work.wait()

    def _deliver(self, out: RequestOutput) -> None:
        with self._work:
            channel = self._channels.pop(out.request_id, None) if out.finished else self._channels.get(out.request_id)
        if channel is not None and not _send(channel, out):
            self.abort(out.request_id)

    def _fail_request(self, request_id: str, exc: BaseException) -> None:
        """Raise `exc` in one caller (the engine has already dropped its request)."""
        with self._work:
            channel = self._channels.pop(request_id, None)
        if channel is not None:
            _send(channel, exc)

    def _fail_in_flight(self, exc: BaseException) -> None:
        """Abort every request the engine holds and raise `exc` in each caller."""
        with self._work:
            channels, self._channels = self._channels, {}
            for request_id in channels:
                self.engine.abort_request(request_id)
        for channel in channels.values():
            _send(channel, exc)


def _send(channel: _Channel, item: RequestOutput | BaseException) -> bool:
    """Put `item` on the caller's queue from the step thread; False if the caller's loop is gone."""
    try:
        channel.loop.call_soon_threadsafe(channel.queue.put_nowait, item)
    except RuntimeError:  # the event loop was closed while the request was in flight
        return False
    return True
