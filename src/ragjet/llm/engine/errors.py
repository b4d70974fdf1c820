"""Errors the engine raises at submission, phrased for the client that caused them."""

from __future__ import annotations


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
