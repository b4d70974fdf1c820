"""One contract, two transports: the same requests sent over REST and gRPC get the same outcome (the same error
code and status family for a bad one; the same answer, options applied, for a good one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from ragjet.serve.contract import TAXONOMY
from ragjet.serve.proto import ragjet_pb2 as pb
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc
from support.live_server import LiveServer
from support.tiny_models import COLLECTION

QUESTION = "What does a Fresnel lens do?"
# name: (ragjet request fields, the contract's error code or None for success)
ASK_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "all-options": (dict(top_k=2, max_tokens=5, temperature=0.0, top_p=0.5, seed=7, stop=["zzz"]), None),
    "blank-question": (dict(question="   "), "invalid_request"),
    "top-k-too-big": (dict(top_k=51), "invalid_request"),
    "temperature-too-high": (dict(temperature=3.0), "invalid_request"),
    "top-p-zero": (dict(top_p=0.0), "invalid_request"),
    "max-tokens-too-big": (dict(max_tokens=9000), "invalid_request"),
    "too-many-stops": (dict(stop=["a", "b", "c", "d", "e"]), "invalid_request"),
    "unknown-collection": (dict(collection="absent"), "collection_not_found"),
}
SEARCH_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "plain": (dict(query="How is sourdough bread made to rise?", top_k=2), None),
    "blank-query": (dict(query=" "), "invalid_request"),
    "top-k-too-big": (dict(query="bread", top_k=101), "invalid_request"),
    "unknown-collection": (dict(query="bread", collection="absent"), "collection_not_found"),
}
HTTP_STATUS = {kind.code: kind.http_status for _, kind in TAXONOMY}
GRPC_STATUS = {kind.code: getattr(grpc.StatusCode, kind.grpc_status) for _, kind in TAXONOMY}


@pytest.fixture(scope="module")
def stub(live_server: LiveServer) -> Iterator[pb_grpc.RagJetStub]:
    with grpc.insecure_channel(live_server.grpc_target) as channel:
        yield pb_grpc.RagJetStub(channel)


def rest_ask(server: LiveServer, fields: dict[str, Any]) -> httpx.Response:
    fields = {"collection": COLLECTION, "question": QUESTION, **fields}
    ragjet = {k: fields[k] for k in ("collection", "top_k") if k in fields}
    body = {"model": "ragjet", "messages": [{"role": "user", "content": fields["question"]}], "ragjet": ragjet}
    body |= {k: fields[k] for k in ("max_tokens", "temperature", "top_p", "seed", "stop") if k in fields}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)


def grpc_ask(stub: pb_grpc.RagJetStub, fields: dict[str, Any]) -> pb.AnswerDone:
    request = pb.AskRequest(**{"collection": COLLECTION, "question": QUESTION, **fields})
    return list(stub.Ask(request, timeout=60))[-1].done


def grpc_error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), dict(failed.value.trailing_metadata() or ())["ragjet-error-code"]


@pytest.mark.parametrize("case", ASK_CASES)
def test_ask_has_one_outcome_over_rest_and_grpc(case: str, live_server: LiveServer, stub: pb_grpc.RagJetStub) -> None:
    fields, code = ASK_CASES[case]
    response = rest_ask(live_server, fields)
    if code is None:
        assert response.status_code == 200, response.text
        done = grpc_ask(stub, fields)
        rest = response.json()
        assert done.text == rest["choices"][0]["message"]["content"]  # greedy: the options reached both alike
        assert done.completion_tokens == rest["usage"]["completion_tokens"] <= fields["max_tokens"]
        assert len(done.citations) == len(rest["ragjet"]["citations"]) <= fields["top_k"]
        return
    assert (response.status_code, response.json()["error"]["code"]) == (HTTP_STATUS[code], code)
    assert grpc_error(lambda: grpc_ask(stub, fields)) == (GRPC_STATUS[code], code)


@pytest.mark.parametrize("case", SEARCH_CASES)
def test_search_has_one_outcome_over_rest_and_grpc(
    case: str, live_server: LiveServer, stub: pb_grpc.RagJetStub
) -> None:
    fields, code = SEARCH_CASES[case]
    fields = {"collection": COLLECTION, **fields}
    response = httpx.post(f"{live_server.url}/v1/search", json=fields, timeout=30)
    if code is None:
        assert response.status_code == 200, response.text
        hits = stub.Search(pb.SearchRequest(**fields), timeout=30).hits
        assert [h.chunk_id for h in hits] == [r["chunk_id"] for r in response.json()["results"]]
        return
    assert (response.status_code, response.json()["error"]["code"]) == (HTTP_STATUS[code], code)
    assert grpc_error(lambda: stub.Search(pb.SearchRequest(**fields), timeout=30)) == (GRPC_STATUS[code], code)


def test_an_unknown_model_is_model_not_found_listing_the_models(live_server: LiveServer) -> None:
    body = {"model": "privat", "messages": [{"role": "user", "content": QUESTION}]}
    response = httpx.post(f"{live_server.url}/v1/chat/completions", json=body, timeout=30)
    error = response.json()["error"]
    assert response.status_code == 404 and error["code"] == "model_not_found"
    assert "'privat'" in error["message"] and "ragjet" in error["message"] and COLLECTION in error["message"]
