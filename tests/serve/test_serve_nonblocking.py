"""A long ingest stalls no one: while a 400-document upload ingests into a collection, health checks and searches
on the same collection stay fast, a document delete on it is refused at once with 409 collection_busy (it
never waits behind the ingest), and listings answer from a consistent snapshot."""

from __future__ import annotations

import threading
import time

import httpx

from support.live_server import LiveServer

NUM_DOCS = 400
COLLECTION = "busy"
WORDS = ["harbour", "lantern", "basalt", "sourdough", "glacier", "orchard", "meadow", "copper", "violin", "tundra"]


def documents() -> list[tuple[str, tuple[str, bytes, str]]]:
    def text(i: int) -> str:
        words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40))
        return f"# Note {i}\n\nNote {i} is about the {WORDS[i % len(WORDS)]}. {words}.\n"

    return [("files", (f"note-{i:03d}.md", text(i).encode(), "text/markdown")) for i in range(NUM_DOCS)]


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_reads_stay_fast_and_a_delete_is_refused_while_an_upload_ingests(live_server: LiveServer) -> None:
    client = httpx.Client(base_url=live_server.url, timeout=120)
    seed = [("files", ("seed.md", b"# Seed\n\nThe seed note is about a lantern.\n", "text/markdown"))]
    assert client.post(f"/v1/collections/{COLLECTION}/documents", files=seed).status_code == 200
    (seed_source,) = [d["source"] for d in client.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]]
    upload: dict[str, httpx.Response] = {}
    uploader = threading.Thread(
        target=lambda: upload.setdefault(
            "response", client.post(f"/v1/collections/{COLLECTION}/documents", files=documents())
        ),  # fmt: skip
    )
    uploader.start()
    time.sleep(0.5)  # the upload is in: the ingest holds the collection's writer

    health, search, busy = [], [], []
    while uploader.is_alive():
        for samples, call in (
            (health, lambda: client.get("/healthz")),
            (search, lambda: client.post("/v1/search", json={"query": "lantern", "collection": COLLECTION})),
        ):
            start = time.perf_counter()
            assert call().status_code == 200  # noqa: B023 - called at once
            samples.append((time.perf_counter() - start) * 1e3)
        if not busy and uploader.is_alive():
            start = time.perf_counter()
            refused = client.delete(f"/v1/collections/{COLLECTION}/documents", params={"source": seed_source})
            busy.append((time.perf_counter() - start) * 1e3)
            listed = client.get(f"/v1/collections/{COLLECTION}/documents")
            collections = client.get("/v1/collections")
        time.sleep(0.02)
    uploader.join()

    assert upload["response"].status_code == 200, upload["response"].text
    assert upload["response"].json()["report"]["num_added"] == NUM_DOCS
    assert len(health) >= 10, "the upload finished before the load could be measured"
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "collection_busy"
    assert refused.headers["Retry-After"] and busy[0] < 100
    assert listed.status_code == 200 and collections.status_code == 200
    assert COLLECTION in {c["name"] for c in collections.json()["collections"]}
    assert p99(health) < 100, f"/healthz p99 {p99(health):.0f} ms while ingesting: {[round(s) for s in health]}"
    assert p99(search) < 100, f"/v1/search p99 {p99(search):.0f} ms while ingesting: {[round(s) for s in search]}"
    assert client.delete(f"/v1/collections/{COLLECTION}/documents", params={"source": seed_source}).status_code == 204
