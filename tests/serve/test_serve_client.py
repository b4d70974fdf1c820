"""The typed client against a real server: every route has a method, answers and streams are typed, collections
and the review queue work end to end, and each failure a user can cause arrives as its own exception."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from ragjet.client import ROUTES, AsyncClient, Client, StreamDone, StreamStart, TextDelta
from ragjet.client.models import (
    AuthenticationError,
    CollectionBusyError,
    InvalidRequestError,
    NotFoundError,
    RagjetConnectionError,
    RateLimitedError,
    error_for,
)
from support.live_server import COLLECTION, LiveServer

QUESTION = "What does a Fresnel lens do?"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Client:
    with Client(live_server.url) as ragjet:
        yield ragjet


def test_every_route_of_the_server_has_a_client_method(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    served = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert served == set(ROUTES.values())
    assert all(callable(getattr(Client, name)) for name in ROUTES)


def test_answers_and_streams_are_typed_and_agree(client: Client) -> None:
    answer = client.ask(QUESTION, collection=COLLECTION, max_tokens=6, top_k=2)
    assert answer.text and answer.citations and answer.citations[0].source.endswith("lighthouse.md")
    assert answer.completion_tokens <= 6 and answer.timings_ms["total_ms"] > 0 and not answer.from_cache
    events = list(client.ask_stream(QUESTION, collection=COLLECTION, max_tokens=6, top_k=2))
    assert isinstance(events[0], StreamStart) and isinstance(events[-1], StreamDone)
    streamed = events[-1].answer
    assert streamed.text == "".join(e.text for e in events if isinstance(e, TextDelta)) == answer.text  # greedy
    assert [c.chunk_id for c in streamed.citations] == [c.chunk_id for c in events[0].citations]


def test_search_embed_models_and_the_server_routes(client: Client) -> None:
    hits = client.search("Which volcano is on Sicily?", collection=COLLECTION, top_k=2).results
    assert len(hits) == 2 and hits[0].source.endswith("volcano.md")
    (vector,) = client.embed(["lava"])
    assert len(vector) == 384
    assert "ragjet" in client.models() and COLLECTION in client.models()
    assert client.health() and client.ready() and client.system()["host"]["cpu_model"]


def test_collections_upload_with_progress_documents_and_deletes(client: Client, tmp_path: Path) -> None:
    note = tmp_path / "tea.md"
    note.write_text("# Tea\n\nGreen tea is steamed; black tea is oxidised.\n" * 20)
    created = client.create_collection("client-tea")
    assert created.name == "client-tea" and created.num_documents == 0
    seen: list[tuple[int, int]] = []
    report = client.upload("client-tea", [note], progress=lambda sent, total: seen.append((sent, total)))
    assert report.num_added == 1 and report.num_chunks >= 1
    assert seen and seen[-1] == (note.stat().st_size, note.stat().st_size)
    (document,) = client.documents("client-tea")
    assert "client-tea" in {c.name for c in client.collections()}
    client.delete_document("client-tea", document.source)
    assert client.documents("client-tea") == []
    client.delete_collection("client-tea")
    with pytest.raises(NotFoundError) as missing:
        client.documents("client-tea")
    assert missing.value.code == "collection_not_found" and missing.value.status == 404


def test_the_review_queue_round_trip(client: Client, live_server: LiveServer) -> None:
    from ragjet.rag.tenants import DEFAULT_TENANT
    from ragjet.rag.types import Answer, StageTimings

    with pytest.raises(NotFoundError, match="review_item_not_found"):
        client.review_item("no-such-item")
    flagged = Answer("r-client", "Maybe basalt?", [], StageTimings(), confidence=0.1, needs_review=True)
    item_id = live_server.pipeline.review_queue().add(DEFAULT_TENANT, COLLECTION, "Which lava is runny?", flagged)
    assert item_id in {i.id for i in client.review_items(status="pending")}
    resolved = client.resolve_review(item_id, "Basaltic lava is runny.", reviewer="client test")
    assert resolved.status == "resolved" and client.review_item(item_id).resolution == "Basaltic lava is runny."


def test_user_errors_arrive_typed(client: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.ask(QUESTION, collection="absent")
    assert missing.value.code == "collection_not_found" and "absent" in missing.value.message
    with pytest.raises(InvalidRequestError) as bad:
        client.ask(QUESTION, collection=COLLECTION, temperature=5.0)
    assert bad.value.code == "invalid_request" and "temperature" in bad.value.message
    with Client("http://127.0.0.1:9", max_retries=0) as down, pytest.raises(RagjetConnectionError):
        down.health()


def test_a_wrong_key_is_an_authentication_error(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
                                                corpus_dir: Path) -> None:  # fmt: skip
    from support.live_server import run_live_server

    with run_live_server(tmp_path_factory.mktemp("client-auth"), tiny_llama_dir, corpus_dir, auth_enabled=True) as s:
        with Client(s.url, api_key="not-a-key") as wrong, pytest.raises(AuthenticationError):
            wrong.collections()
        _, key = s.gatekeeper.keys.create("client-test")
        with Client(s.url, api_key=key) as right:
            assert right.collections() == []


def test_429_is_retried_after_the_servers_retry_after_then_raised() -> None:
    """A fault injected by a transport: 429 twice, then 200; and always 429 beyond the retry budget."""
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 2:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"message": "slow down",
                                  "type": "rate_limit_error", "code": "rate_limited"}})  # fmt: skip
        return httpx.Response(200, json={"status": "ok"})

    with Client(http=httpx.Client(base_url="http://ragjet", transport=httpx.MockTransport(flaky))) as ragjet:
        assert ragjet.health() and len(calls) == 3
        calls.clear()
        ragjet.max_retries = 1
        with pytest.raises(RateLimitedError) as limited:
            ragjet.health()
        assert limited.value.retry_after_s == 0 and len(calls) == 2


def test_error_bodies_map_to_their_classes() -> None:
    busy = error_for(409, {"error": {"message": "busy", "code": "collection_busy"}}, "5")
    assert isinstance(busy, CollectionBusyError) and busy.retry_after_s == 5
    assert isinstance(error_for(413, {"error": {"message": "too big", "code": "request_too_large"}}, None),
                      InvalidRequestError)  # fmt: skip
    assert error_for(502, "<html>bad gateway</html>", None).code == "server_error"


def test_the_async_client_answers_streams_and_searches(live_server: LiveServer) -> None:
    async def run() -> None:
        async with AsyncClient(live_server.url) as ragjet:
            answer = await ragjet.ask(QUESTION, collection=COLLECTION, max_tokens=6)
            events = [e async for e in ragjet.ask_stream(QUESTION, collection=COLLECTION, max_tokens=6)]
            assert isinstance(events[-1], StreamDone) and events[-1].answer.text == answer.text
            assert (await ragjet.search("bread", collection=COLLECTION)).results
            assert COLLECTION in {c.name for c in await ragjet.collections()}
            with pytest.raises(NotFoundError):
                await ragjet.ask(QUESTION, collection="absent")
            created = await ragjet.create_collection("async-notes")
            assert created.name == "async-notes" and await ragjet.documents("async-notes") == []
            await ragjet.delete_collection("async-notes")
            assert "async-notes" not in {c.name for c in await ragjet.collections()}
            assert isinstance(await ragjet.review_items(), list)

    asyncio.run(run())
