"""Errors the engine raises at submission, phrased for the client that caused them, and the one a step raises
when a single request has to go."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragjet.llm.engine.outputs import RequestOutput


class RequestFailedError(RuntimeError):
    """A step ran out of device memory and the engine dropped one request, the largest of the step, to recover:
    `cause` is that request's error. The other requests stay queued and run again in the next step, so one huge
    request cannot fail (or drag to a CPU fallback) every request that shared its batch. `outputs` are the
    step's other results (requests that timed out), still to be delivered."""

    def __init__(self, request_id: str, cause: BaseException, outputs: list[RequestOutput]):
        super().__init__(f"request {request_id} dropped: {cause}")
        self.request_id, self.cause, self.outputs = request_id, cause, outputs


class EngineOverloadedError(RuntimeError):
    """The waiting queue is full: the request is refused now rather than queued past any deadline."""


class PromptTooLongError(ValueError):
    """The prompt plus the requested new tokens do not fit the model's context window."""

    def __init__(self, num_prompt_tokens: int, max_tokens: int, max_model_len: int):
        super().__init__(
            f"prompt of {num_prompt_tokens} tokens plus max_tokens={max_tokens} exceeds the context window "
            f"of {max_model_len} tokens"
        )
        self.num_prompt_tokens, self.max_tokens, self.max_model_len = num_prompt_tokens, max_tokens, max_model_len
