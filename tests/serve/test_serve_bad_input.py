"""Clients that get things wrong get a clear 4xx in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

import time

import httpx
import pytest

from support.stack import require_layers

require_layers()

from support.live_server import LiveServer

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


def ask_body(**overrides: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "What is a Fresnel lens?"}], "max_tokens": 4, **overrides}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"messages": [', 400, "malformed JSON"),
        (b"[1, 2]", 400, "invalid request"),
        (ask_body(messages=[]), 400, "messages"),
        (ask_body(messages=[{"role": "user", "content": "   "}]), 400, "non-empty user message"),
        (ask_body(temperature=-1), 400, "temperature"),
        (ask_body(max_tokens=0), 400, "max_tokens"),
        (ask_body(top_p=0), 400, "top_p"),
        (ask_body(n=3), 400, "n"),
        (ask_body(ragjet={"top_k": 0}), 400, "top_k"),
        (ask_body(ragjet={"unknown_option": 1}), 400, "unknown_option"),
        (ask_body(ragjet={"collection": "missing-collection"}), 404, "missing-collection"),
        (ask_body(ragjet={"filters": {"colour": "red"}}), 400, "colour"),
        (ask_body(max_tokens=5000), 400, "max_tokens"),
    ],
)
def test_bad_chat_requests(http: httpx.Client, body: object, status: int, words: str) -> None:
    if isinstance(body, bytes):
        response = http.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.post(CHAT, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"]
    assert http.get("/healthz").status_code == 200


def test_oversized_body_is_refused_before_it_is_read(http: httpx.Client, live_server: LiveServer) -> None:
    huge = "x" * (live_server.settings.serve.max_request_bytes + 1)
    response = http.post(CHAT, json=ask_body(messages=[{"role": "user", "content": huge}]))
    assert response.status_code == 413 and "bytes" in response.json()["error"]["message"]


def test_bad_search_and_collection_requests(http: httpx.Client) -> None:
    assert http.post("/v1/search", json={"query": ""}).status_code == 400
    assert http.post("/v1/search", json={"query": "x", "top_k": 1000}).status_code == 400
    assert http.post("/v1/search", json={"query": "x", "collection": "nope"}).status_code == 404
    assert http.post("/v1/collections", json={"name": "../escape"}).status_code == 400
    assert http.delete("/v1/collections/never-made").status_code == 404
    assert http.post("/v1/embeddings", json={"input": []}).status_code == 400


def test_client_disconnect_cancels_generation_and_frees_kv_blocks(http: httpx.Client, live_server: LiveServer) -> None:
    before = live_server.engine_stats()
    body = ask_body(max_tokens=700, stream=True)  # long enough to be cut off; fits the 1024-token window
    with http.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        assert any(line.startswith("data: ") and '"content"' in line for line in lines)  # generation started
    # The client is gone: the engine must stop the sequence and give its blocks back.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = live_server.engine_stats()
        if stats.num_running == 0 and stats.num_waiting == 0 and stats.num_free_blocks == before.num_free_blocks:
            break
        time.sleep(0.05)
    stats = live_server.engine_stats()
    assert stats.num_running == stats.num_waiting == 0
    assert stats.num_free_blocks == before.num_free_blocks
    assert http.post(CHAT, json=ask_body()).status_code == 200  # and the server still answers
