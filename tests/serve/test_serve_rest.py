"""ragjet's own REST routes on a real server: search, collections, health, metrics, the OpenAPI spec."""

from __future__ import annotations

import httpx
import pytest

from support.stack import require_layers

require_layers()

from support.live_server import COLLECTION, LiveServer


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


def test_search_ranks_the_matching_document_first(http: httpx.Client) -> None:
    response = http.post("/v1/search", json={"query": "Which volcano on Sicily erupts often?", "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["collection"] == COLLECTION
    results = body["results"]
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    assert results[0]["source"].endswith("volcano.md") and "Etna" in results[0]["text"]
    assert results[0]["score"] >= results[-1]["score"]


def test_search_filters_by_source(http: httpx.Client) -> None:
    everything = http.post("/v1/search", json={"query": "lava and bread", "top_k": 10}).json()["results"]
    bread = next(r["source"] for r in everything if r["source"].endswith("bread.md"))
    filtered = http.post("/v1/search", json={"query": "lava", "top_k": 10, "filters": {"source": bread}}).json()
    assert filtered["results"] and {r["source"] for r in filtered["results"]} == {bread}


def test_collection_lifecycle_upload_list_delete(http: httpx.Client) -> None:
    name = "scratch"
    assert http.post("/v1/collections", json={"name": name}).status_code == 201
    assert http.post("/v1/collections", json={"name": name}).status_code == 409  # already exists
    files = [("files", ("notes.md", b"# Tea\n\nGreen tea is steamed, black tea is oxidised.\n", "text/markdown"))]
    report = http.post(f"/v1/collections/{name}/documents", files=files).json()["report"]
    assert report["num_added"] == 1 and report["num_chunks"] >= 1
    again = http.post(f"/v1/collections/{name}/documents", files=files).json()["report"]
    assert again["num_unchanged"] == 1 and again["num_added"] == 0  # idempotent re-upload
    listed = {c["name"]: c for c in http.get("/v1/collections").json()["collections"]}
    assert listed[name]["num_documents"] == 1 and listed[COLLECTION]["num_documents"] == 3
    (doc,) = http.get(f"/v1/collections/{name}/documents").json()["documents"]
    hit = http.post("/v1/search", json={"query": "oxidised tea", "collection": name}).json()["results"][0]
    assert hit["source"] == doc["source"]
    deleted = http.request("DELETE", f"/v1/collections/{name}/documents", params={"source": doc["source"]})
    assert deleted.status_code == 204
    assert http.get(f"/v1/collections/{name}/documents").json()["documents"] == []
    assert http.delete(f"/v1/collections/{name}").status_code == 204
    assert http.get(f"/v1/collections/{name}/documents").status_code == 404


def test_uploads_are_type_checked(http: httpx.Client) -> None:
    exe = [("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))]
    assert http.post(f"/v1/collections/{COLLECTION}/documents", files=exe).status_code == 415
    fake_pdf = [("files", ("paper.pdf", b"not a pdf at all", "application/pdf"))]
    response = http.post(f"/v1/collections/{COLLECTION}/documents", files=fake_pdf)
    assert response.status_code == 415 and "paper.pdf" in response.json()["error"]["message"]
    sneaky = [("files", ("../../etc/passwd.md", b"# x\n\ny\n", "text/markdown"))]
    response = http.post("/v1/collections/sneaky/documents", files=sneaky)
    assert response.status_code == 200
    (doc,) = http.get("/v1/collections/sneaky/documents").json()["documents"]
    assert "/etc/" not in doc["source"] and doc["source"].endswith("passwd.md")  # stays inside the uploads folder
    http.delete("/v1/collections/sneaky")


def test_health_readiness_metrics_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Etna?"}], "max_tokens": 2})
    metrics = http.get("/metrics").text
    for stage in ("embed", "search", "prompt", "prefill", "total"):
        assert f'ragjet_stage_seconds_count{{stage="{stage}"}}' in metrics
    assert 'ragjet_http_requests_total{route="/v1/chat/completions",status="200"}' in metrics
    assert "ragjet_engine_num_free_blocks" in metrics and "ragjet_prefix_cache_hits_total" in metrics
    for part in ("limit", "weights", "kv_cache"):  # the engine's memory split (llm/engine/memory.py)
        assert f'ragjet_engine_memory_bytes{{part="{part}"}}' in metrics
    memory = http.get("/v1/system").json()["engine_memory"]
    assert memory["kv_cache"] > 0 and memory["num_blocks"] > 0 and memory["device"] == "cpu"
    http.post("/v1/search", json={"query": "x", "collection": "nope"})
    assert 'ragjet_errors_total{kind="client_error"}' in http.get("/metrics").text
    paths = http.get("/openapi.json").json()["paths"]
    for route in ("/v1/chat/completions", "/v1/embeddings", "/v1/search", "/v1/collections", "/healthz", "/readyz"):
        assert route in paths


def test_request_id_is_echoed_and_matches_the_answer(http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "Etna?"}], "max_tokens": 2}
    response = http.post("/v1/chat/completions", json=body, headers={"X-Request-ID": "client-trace-7"})
    assert response.headers["X-Request-ID"] == "client-trace-7"
    assert response.json()["ragjet"]["request_id"] == "client-trace-7"
    minted = http.get("/healthz").headers["X-Request-ID"]
    assert len(minted) == 16
