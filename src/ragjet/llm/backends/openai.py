"""A backend for any OpenAI-compatible server (vLLM, llama.cpp's server, TGI, OpenAI itself).

Chat messages go to `/chat/completions`, finished prompt text to `/completions`; both stream
server-sent events. Connection failures, 429 and 5xx answers are retried with exponential backoff, but
only before the first token arrived: after that a retry would repeat text the caller already has.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from jinja2 import Template

from ragjet.llm.backends.base import BackendError, LLMBackend, Messages, Prompt, TextDelta
from ragjet.llm.segments import PromptSegments

if TYPE_CHECKING:
    from ragjet.config import LLMSettings
    from ragjet.llm.engine.outputs import EngineStats
    from ragjet.llm.sampling_params import SamplingParams

# Used by format_chat when no local tokenizer is given: the template of SmolLM2, Qwen and many others.
CHATML_TEMPLATE = Template(
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n",
    keep_trailing_newline=True,
)
CHARS_PER_TOKEN = 3.0  # fewer than the usual ~4 for English, so the estimate errs on the high side
MAX_RETRY_AFTER_S = 30.0
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class ChatTemplater(Protocol):
    """What the backend needs from a local tokenizer, if one is given."""

    def apply_chat_template(self, messages: Messages, add_generation_prompt: bool = True) -> str: ...
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3  # attempts after the first
    backoff_s: float = 0.5  # wait before retry i is backoff_s * 2**i

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError(f"retry policy needs max_retries >= 0 and backoff_s >= 0, got {self}")


class _Retryable(Exception):
    def __init__(self, error: BackendError, wait_s: float | None = None):
        self.error = error
        self.wait_s = wait_s  # the server's Retry-After, when it sent one


class OpenAIBackend(LLMBackend):
    """Streams from `settings.openai_base_url` (e.g. "http://127.0.0.1:8080/v1").

    `tokenizer` (optional) gives exact token counts and the model's own chat template for raw prompts;
    without it counts are estimated from characters and format_chat renders ChatML.
    """

    name = "openai"

    def __init__(
        self, settings: LLMSettings, tokenizer: ChatTemplater | None = None, retry: RetryPolicy = RetryPolicy()
    ):
        self.model = settings.openai_model or settings.model
        self.tokenizer = tokenizer
        self.retry = retry
        self.timeout_s = settings.request_timeout_s
        headers = {"Authorization": f"Bearer {settings.openai_api_key}"} if settings.openai_api_key else {}
        self._client = httpx.AsyncClient(
            base_url=settings.openai_base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout_s),
        )

    def format_chat(self, messages: Messages) -> str:
        if self.tokenizer is not None:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return CHATML_TEMPLATE.render(messages=messages)

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def stats(self) -> EngineStats:
        from ragjet.llm.engine.outputs import EngineStats

        return EngineStats()

    async def close(self) -> None:
        await self._client.aclose()

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[TextDelta, None]:
        if isinstance(prompt, PromptSegments):  # the server reuses what its own prefix cache holds
            prompt = prompt.text
        is_chat = not isinstance(prompt, str)
        path = "chat/completions" if is_chat else "completions"
        body = request_body(self.model, prompt, params)
        num_streamed = 0
        for attempt in range(self.retry.max_retries + 1):
            try:
                async with aclosing(self._stream_once(path, body, is_chat)) as deltas:
                    async for delta in deltas:
                        num_streamed += 1
                        yield delta
                return
            except _Retryable as retryable:
                if num_streamed or attempt == self.retry.max_retries:
                    raise retryable.error from None
                wait_s = retryable.wait_s if retryable.wait_s is not None else self.retry.backoff_s * 2**attempt
                await asyncio.sleep(wait_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _stream_once(self, path: str, body: dict[str, Any], is_chat: bool) -> AsyncGenerator[TextDelta, None]:
        url = f"{self._client.base_url}{path}"
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    raise await _status_error(response, url)
                async for line in response.aiter_lines():
                    event = _sse_data(line)
                    if event is None:
                        continue
                    if event == "[DONE]":
                        return
                    delta = parse_chunk(_json_event(event, url), is_chat, url)
                    if delta is not None:
                        yield delta
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retryable(BackendError(f"cannot connect to {url}: {exc}")) from exc
        except httpx.TimeoutException as exc:
            raise BackendError(f"{url} did not answer within {self.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"{url} broke off the response: {exc}") from exc


def request_body(model: str, prompt: str | Messages, params: SamplingParams) -> dict[str, Any]:
    """The JSON body for SamplingParams; extensions (top_k, repetition_penalty) only when they differ from
    the defaults, so that strict servers that reject unknown fields still accept plain requests."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    if isinstance(prompt, str):
        body["prompt"] = prompt
    else:
        body["messages"] = prompt
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    if params.top_k > 0:
        body["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    if params.logprobs:
        body["logprobs"] = True if "messages" in body else 1
    return body


def parse_chunk(chunk: dict[str, Any], is_chat: bool, url: str) -> TextDelta | None:
    """One streamed JSON chunk → a TextDelta (None for chunks without choices, e.g. usage-only ones)."""
    if "error" in chunk:
        raise BackendError(f"{url} failed mid-stream: {_error_message(chunk)}")
    choices = chunk.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    if is_chat:
        text = (choice.get("delta") or {}).get("content") or ""
        entries = (choice.get("logprobs") or {}).get("content")
        logprobs = [float(e["logprob"]) for e in entries] if entries else None
    else:
        text = choice.get("text") or ""
        values = (choice.get("logprobs") or {}).get("token_logprobs")
        logprobs = [float(v) for v in values] if values else None
    finish_reason = choice.get("finish_reason")
    if not text and finish_reason is None:
        return None
    num_tokens = len(logprobs) if logprobs is not None else int(bool(text))
    usage = chunk.get("usage") or {}
    return TextDelta(text, num_tokens, finish_reason, logprobs, num_prompt_tokens=usage.get("prompt_tokens", 0))


def _json_event(event: str, url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(event)
    except json.JSONDecodeError:
        raise BackendError(f"{url} sent a malformed event: {event[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise BackendError(f"{url} sent a malformed event: {event[:200]!r}")
    return chunk


def _sse_data(line: str) -> str | None:
    """The payload of a `data:` line; None for blank lines, comments and other SSE fields."""
    if not line.startswith("data:"):
        return None
    return line[len("data:") :].strip()


async def _status_error(response: httpx.Response, url: str) -> Exception:
    body = (await response.aread()).decode(errors="replace")
    try:
        message = _error_message(json.loads(body))
    except (json.JSONDecodeError, AttributeError):
        message = body.strip()[:500] or response.reason_phrase
    error = BackendError(f"{url} answered {response.status_code}: {message}", status=response.status_code)
    if response.status_code in RETRYABLE_STATUS:
        return _Retryable(error, _retry_after_s(response))
    return error


def _error_message(payload: dict[str, Any]) -> str:
    """OpenAI puts the reason in {"error": {"message"}}, FastAPI-based servers in {"detail"}."""
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message", error))
    if error is not None:
        return str(error)
    return str(payload.get("detail", payload))


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), MAX_RETRY_AFTER_S)
    except (KeyError, ValueError):
        return None
