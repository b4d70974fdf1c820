"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 that plays scripted answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Needs SamplingParams: skip until it lands.
for _module in ("ragjet.llm.sampling_params",):
    pytest.importorskip(_module)

from ragjet.config import LLMSettings  # noqa: E402
from ragjet.llm.backends import BackendError, create_backend  # noqa: E402
from ragjet.llm.backends.openai import OpenAIBackend, RetryPolicy  # noqa: E402
from ragjet.llm.sampling_params import SamplingParams  # noqa: E402

FAST_RETRY = RetryPolicy(max_retries=3, backoff_s=0.01)


@dataclass
class Script:
    """What the server answers, one action per request; the last action repeats."""

    actions: list[str] = field(default_factory=lambda: ["ok"])
    requests: list[tuple[str, dict]] = field(default_factory=list)
    first_chunk_seen: threading.Event = field(default_factory=threading.Event)
    words: tuple[str, ...] = ("Hello", " brave", " world")

    def next_action(self) -> str:
        return self.actions[min(len(self.requests) - 1, len(self.actions) - 1)]


class ScriptedHandler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.script.requests.append((self.path, body))
        action = self.script.next_action()
        if action == "500":
            self._send_json(500, {"error": {"message": "model worker crashed"}})
        elif action == "429":
            self._send_json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        elif action == "400":
            self._send_json(400, {"error": {"message": "max_tokens is too large: 99999"}})
        elif action == "hang":
            time.sleep(2.0)
        else:
            self._stream(body, break_after_first=action == "break")

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict, break_after_first: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        is_chat = "messages" in body
        for i, word in enumerate(self.script.words):
            if i == 1:  # the client must have the first piece before the server writes the second
                self.script.first_chunk_seen.wait(timeout=5)
                if break_after_first:
                    self._event({"error": {"message": "worker lost"}})
                    return
            last = i == len(self.script.words) - 1
            if is_chat:
                choice = {"delta": {"content": word}, "finish_reason": "stop" if last else None}
                choice["logprobs"] = {"content": [{"token": word, "logprob": -0.5 * (i + 1)}]}
            else:
                choice = {"text": word, "finish_reason": "stop" if last else None}
                choice["logprobs"] = {"tokens": [word], "token_logprobs": [-0.5 * (i + 1)]}
            self._event({"choices": [choice]})
        self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Handler", (ScriptedHandler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def make_backend(base_url: str, timeout_s: float = 5.0) -> OpenAIBackend:
    settings = LLMSettings(backend="openai", openai_base_url=base_url, openai_model="tiny", request_timeout_s=timeout_s)
    return OpenAIBackend(settings, retry=FAST_RETRY)


async def test_chat_streams_each_piece_as_the_server_sends_it(server: tuple[str, Script]) -> None:
    url, script = server
    backend = make_backend(url)
    pieces = []
    async for delta in backend.stream([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=3)):
        pieces.append(delta)
        script.first_chunk_seen.set()  # the server holds back piece two until this point
    await backend.close()
    assert [d.text for d in pieces] == ["Hello", " brave", " world"]
    assert [d.finish_reason for d in pieces] == [None, None, "stop"]
    path, body = script.requests[0]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["model"] == "tiny"
    assert body["stream"] is True and body["max_tokens"] == 3


async def test_raw_prompt_uses_completions_and_collects_logprobs(server: tuple[str, Script]) -> None:
    url, script = server
    script.first_chunk_seen.set()
    backend = make_backend(url)
    params = SamplingParams(max_tokens=3, temperature=0.0, seed=7, stop=["\n"], logprobs=True)
    completion = await backend.complete("Say hello", params)
    await backend.close()
    assert completion.text == "Hello brave world"
    assert completion.num_completion_tokens == 3 and completion.finish_reason == "stop"
    assert completion.logprobs == [-0.5, -1.0, -1.5]
    path, body = script.requests[0]
    assert path == "/v1/completions" and body["prompt"] == "Say hello"
    assert body["seed"] == 7 and body["stop"] == ["\n"] and body["temperature"] == 0.0
    assert "top_k" not in body  # extensions only when set, so strict servers accept the request


async def test_server_errors_are_retried_before_the_first_token(server: tuple[str, Script]) -> None:
    url, script = server
    script.actions = ["500", "429", "ok"]
    script.first_chunk_seen.set()
    backend = make_backend(url)
    completion = await backend.complete("hi", SamplingParams(max_tokens=3))
    await backend.close()
    assert completion.text == "Hello brave world"
    assert len(script.requests) == 3


async def test_persistent_server_error_names_status_and_message(server: tuple[str, Script]) -> None:
    url, script = server
    script.actions = ["500"]
    backend = make_backend(url)
    with pytest.raises(BackendError, match="answered 500: model worker crashed") as info:
        await backend.complete("hi", SamplingParams(max_tokens=3))
    await backend.close()
    assert info.value.status == 500
    assert len(script.requests) == FAST_RETRY.max_retries + 1


async def test_client_error_is_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.actions = ["400"]
    backend = make_backend(url)
    with pytest.raises(BackendError, match="answered 400: max_tokens is too large") as info:
        await backend.complete("hi", SamplingParams(max_tokens=3))
    await backend.close()
    assert info.value.status == 400
    assert len(script.requests) == 1


async def test_failure_after_the_first_token_is_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.actions = ["break", "ok"]
    backend = make_backend(url)
    received = []
    with pytest.raises(BackendError, match="mid-stream: worker lost"):
        async for delta in backend.stream("hi", SamplingParams(max_tokens=3)):
            received.append(delta.text)
            script.first_chunk_seen.set()
    await backend.close()
    assert received == ["Hello"]  # no repeated text from a second attempt
    assert len(script.requests) == 1


async def test_hanging_server_times_out_with_a_clear_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.actions = ["hang"]
    backend = make_backend(url, timeout_s=0.3)
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"did not answer within 0.3s"):
        await backend.complete("hi", SamplingParams(max_tokens=3))
    await backend.close()
    assert time.perf_counter() - started < 1.5  # well before the server's 2 s sleep ends
    assert len(script.requests) == 1


async def test_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendError, match=f"cannot connect to http://127.0.0.1:{port}/v1/completions"):
        await backend.complete("hi", SamplingParams(max_tokens=3))
    await backend.close()


def test_factory_builds_the_openai_backend_and_estimates_tokens() -> None:
    backend = create_backend(LLMSettings(backend="openai"))
    assert isinstance(backend, OpenAIBackend) and backend.name == "openai"
    text = "The quick brown fox jumps over the lazy dog."
    assert backend.count_tokens(text) >= len(text.split())  # never an underestimate for English prose
    prompt = backend.format_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
