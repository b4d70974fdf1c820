"""API keys and tenants on a real server with auth on: every route but health needs a key, and a tenant
never reaches another tenant's collections, documents or review items, over REST or gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from support.stack import require_layers

require_layers()

from ragjet.serve.proto import ragjet_pb2 as pb
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc
from support.live_server import COLLECTION, LiveServer, run_live_server

ASK = {"messages": [{"role": "user", "content": "Where is Mount Etna?"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path) -> Iterator[LiveServer]:
    roots = [tmp_path_factory.getbasetemp()]  # server-side ingestion may read the tests' temp folders, not /etc
    data_dir = tmp_path_factory.mktemp("auth-data")
    with run_live_server(data_dir, tiny_llama_dir, corpus_dir, auth_enabled=True, ingest_roots=roots) as s:
        yield s


@pytest.fixture(scope="module")
def keys(server: LiveServer, corpus_dir: Path) -> dict[str, str]:
    store = server.gatekeeper.keys
    made = {tenant: store.create(tenant)[1] for tenant in ("acme", "globex")}
    server.upload(corpus_dir, COLLECTION, key=made["acme"])  # only acme has a "facts" collection
    return made


def client(server: LiveServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


ROUTES = [
    ("POST", "/v1/chat/completions", ASK),
    ("POST", "/v1/search", {"query": "Etna"}),
    ("POST", "/v1/embeddings", {"input": "Etna"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/collections", None),
    ("POST", "/v1/collections", {"name": "x"}),
    ("GET", f"/v1/collections/{COLLECTION}/documents", None),
    ("DELETE", f"/v1/collections/{COLLECTION}", None),
    ("GET", "/v1/review", None),
    ("GET", "/v1/system", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_needs_a_valid_key(server: LiveServer, keys: dict[str, str], method: str, path: str, body) -> None:
    for key in (None, "rj_000000000000_" + "x" * 43, "not-a-key"):
        with client(server, key) as http:
            response = http.request(method, path, json=body)
        assert response.status_code == 401, (key, response.text)
        assert response.json()["error"]["type"] == "authentication_error"
    with client(server, None) as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200


def test_a_tenant_sees_only_its_own_collections(server: LiveServer, keys: dict[str, str]) -> None:
    with client(server, keys["acme"]) as acme, client(server, keys["globex"]) as globex:
        assert COLLECTION in {c["name"] for c in acme.get("/v1/collections").json()["collections"]}
        assert globex.get("/v1/collections").json()["collections"] == []
        assert COLLECTION not in {m["id"] for m in globex.get("/v1/models").json()["data"]}
        (doc, *_) = acme.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
        foreign = [
            globex.post("/v1/search", json={"query": "Etna", "collection": COLLECTION}),
            globex.post("/v1/chat/completions", json={**ASK, "ragjet": {"collection": COLLECTION}}),
            globex.get(f"/v1/collections/{COLLECTION}/documents"),
            globex.request("DELETE", f"/v1/collections/{COLLECTION}/documents", params={"source": doc["source"]}),
            globex.delete(f"/v1/collections/{COLLECTION}"),
        ]
        assert [r.status_code for r in foreign] == [404] * len(foreign)
        assert len(acme.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]) == 3  # untouched
        hits = acme.post("/v1/search", json={"query": "Etna", "collection": COLLECTION}).json()["results"]
        assert hits and hits[0]["source"].endswith("volcano.md")


def test_review_items_stay_with_their_tenant(server: LiveServer, keys: dict[str, str]) -> None:
    from ragjet.rag.types import Answer, StageTimings

    queue = server.pipeline.review_queue()
    item_id = queue.add("acme", COLLECTION, "Where is Etna?", Answer("r", "Sicily", [], StageTimings()))
    with client(server, keys["acme"]) as acme, client(server, keys["globex"]) as globex:
        assert item_id in {i["id"] for i in acme.get("/v1/review").json()["items"]}
        assert item_id not in {i["id"] for i in globex.get("/v1/review").json()["items"]}
        assert globex.get(f"/v1/review/{item_id}").status_code == 404
        assert globex.post(f"/v1/review/{item_id}/resolve", json={"answer": "hijacked"}).status_code == 404
        assert acme.get(f"/v1/review/{item_id}").json()["status"] == "pending"


def test_a_key_reads_the_system_report_of_this_process(server: LiveServer, keys: dict[str, str]) -> None:
    """What `ragjet doctor` prints, for the server's own process: its host and policy, and what its engine's start
    did with the fused kernels (the request never builds them)."""
    from ragjet.hardware import cpu_policy, host
    from ragjet.llm.kernels import cpu as cpu_kernels

    with client(server, keys["acme"]) as http:
        response = http.get("/v1/system")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["host"]["cpu_model"] == host().cpu_model and report["host"]["isa"] == host().isa
    policy = cpu_policy()
    assert report["policy"]["isa"] == policy.isa and report["policy"]["reasons"] == policy.reasons
    assert report["policy"]["llm_dtype"] == str(policy.llm_dtype).removeprefix("torch.")
    engine = report["engine"]
    assert engine["device"] == "cpu" and engine["model_path"] == server.settings.llm.model
    assert engine["kernels"] == cpu_kernels.status() != "not loaded"  # the server runs in this process
    assert report["data_dir"]["path"] == str(server.settings.data_dir) and report["data_dir"]["exists"] is True


def test_revoked_keys_stop_working(server: LiveServer) -> None:
    info, key = server.gatekeeper.keys.create("initech")
    with client(server, key) as http:
        assert http.get("/v1/collections").status_code == 200
        server.gatekeeper.keys.revoke(info.id)
        assert http.get("/v1/collections").status_code == 401


def test_grpc_requires_keys_and_keeps_tenants_apart(server: LiveServer, keys: dict[str, str]) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.RagJetStub(channel)
        request = pb.SearchRequest(query="Etna", collection=COLLECTION)
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.Search(request, timeout=30)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as foreign:
            stub.Search(request, metadata=[("authorization", f"Bearer {keys['globex']}")], timeout=30)
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as ask:
            list(
                stub.Ask(
                    pb.AskRequest(question="Etna?", collection=COLLECTION), metadata=[("x-api-key", keys["globex"])]
                )
            )
        assert ask.value.code() == grpc.StatusCode.NOT_FOUND
        own = stub.Search(request, metadata=[("authorization", f"Bearer {keys['acme']}")], timeout=30)
        assert own.hits[0].source.endswith("volcano.md")
        with pytest.raises(grpc.RpcError) as ingest:
            stub.Ingest(
                pb.IngestRequest(collection="x", paths=["/etc/hostname"]), metadata=[("x-api-key", keys["acme"])]
            )
        assert ingest.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_grpc_ingest_goes_to_the_callers_own_tenant(server: LiveServer, keys: dict[str, str], tmp_path: Path) -> None:
    """A tenant ingesting into a collection name another tenant uses fills its own, separate collection."""
    doc = tmp_path / "kites.md"
    doc.write_text("# Kites\n\nA box kite has two square cells and flies steadily in strong wind.\n")
    globex, acme = [("x-api-key", keys["globex"])], [("x-api-key", keys["acme"])]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.RagJetStub(channel)
        stub.Ingest(pb.IngestRequest(collection=COLLECTION, paths=[str(doc)]), metadata=globex, timeout=60)
        theirs = stub.Search(pb.SearchRequest(query="box kite", collection=COLLECTION), metadata=globex, timeout=30)
        assert {h.source for h in theirs.hits} == {str(doc)}
        ours = stub.Search(pb.SearchRequest(query="box kite", collection=COLLECTION), metadata=acme, timeout=30)
        assert ours.hits and all(h.source != str(doc) for h in ours.hits)
        assert stub.Health(pb.HealthRequest(), timeout=10).ready  # the one method without tenant data needs no key
