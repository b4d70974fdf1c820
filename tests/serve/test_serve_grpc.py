"""The gRPC service over localhost with the generated client stub: Health, Search, Ask (streamed), Ingest."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from support.stack import require_layers

require_layers()

from ragjet.serve.proto import ragjet_pb2 as pb
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc
from support.live_server import LiveServer


@pytest.fixture(scope="module")
def stub(live_server: LiveServer) -> pb_grpc.RagJetStub:
    with grpc.insecure_channel(live_server.grpc_target) as channel:
        yield pb_grpc.RagJetStub(channel)


def test_health(stub: pb_grpc.RagJetStub) -> None:
    reply = stub.Health(pb.HealthRequest(), timeout=10)
    assert reply.ready and reply.version


def test_search(stub: pb_grpc.RagJetStub) -> None:
    reply = stub.Search(pb.SearchRequest(query="How is sourdough bread made to rise?", top_k=2), timeout=30)
    assert [h.rank for h in reply.hits] == [1, 2]
    assert reply.hits[0].source.endswith("bread.md")


def test_ask_streams_start_deltas_and_done(stub: pb_grpc.RagJetStub) -> None:
    events = list(stub.Ask(pb.AskRequest(question="What does a Fresnel lens do?", max_tokens=6), timeout=60))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) <= {"delta"}
    done = events[-1].done
    assert done.text == "".join(e.delta for e in events if e.WhichOneof("event") == "delta")
    assert done.citations[0].source.endswith("lighthouse.md")
    assert done.completion_tokens >= 1 and done.timings_ms["total_ms"] > 0


def test_errors_map_to_status_codes(stub: pb_grpc.RagJetStub) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        list(stub.Ask(pb.AskRequest(question="hi", collection="absent"), timeout=30))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "absent" in missing.value.details()
    with pytest.raises(grpc.RpcError) as empty:
        stub.Search(pb.SearchRequest(query=""), timeout=30)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_ingest_server_side_paths(stub: pb_grpc.RagJetStub, tmp_path: Path) -> None:
    doc = tmp_path / "kites.md"
    doc.write_text("# Kites\n\nA box kite has two square cells and flies steadily in strong wind.\n")
    reply = stub.Ingest(pb.IngestRequest(collection="kites", paths=[str(doc)]), timeout=60)
    assert json.loads(reply.report_json)["num_added"] == 1
    hits = stub.Search(pb.SearchRequest(query="box kite", collection="kites"), timeout=30).hits
    assert hits[0].source == str(doc)


def test_overload_and_rate_limits_are_resource_exhausted_with_a_retry_time(
    stub: pb_grpc.RagJetStub, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragjet.serve.limits import RateLimiter

    ask = pb.AskRequest(question="Which lava flows quickly?", max_tokens=2)
    monkeypatch.setattr(live_server.pipeline.admission, "max_in_flight", 0)  # admission refuses everything
    with pytest.raises(grpc.RpcError) as overloaded:
        list(stub.Ask(ask, timeout=30))
    assert overloaded.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "capacity" in overloaded.value.details()
    assert dict(overloaded.value.trailing_metadata())["retry-after"] == "1"
    monkeypatch.undo()

    monkeypatch.setattr(live_server.gatekeeper, "limiter", RateLimiter(0.01, 1))  # one request, then 100 s to wait
    stub.Search(pb.SearchRequest(query="lava"), timeout=30)
    for call in (lambda: stub.Search(pb.SearchRequest(query="lava"), timeout=30), lambda: list(stub.Ask(ask))):
        with pytest.raises(grpc.RpcError) as limited:
            call()
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert int(dict(limited.value.trailing_metadata())["retry-after"]) >= 90
    monkeypatch.undo()
    assert list(stub.Ask(ask, timeout=60))[-1].HasField("done")


def test_a_deadline_passed_before_generation_is_deadline_exceeded(
    stub: pb_grpc.RagJetStub, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    batcher = live_server.pipeline._batcher
    embed = batcher.embed

    async def slow_embed(text: str):  # type: ignore[no-untyped-def]
        await asyncio.sleep(1.0)
        return await embed(text)

    monkeypatch.setattr(batcher, "embed", slow_embed)
    with pytest.raises(grpc.RpcError) as late:
        list(stub.Ask(pb.AskRequest(question="Which lava flows quickly?", deadline_s=0.2), timeout=30))
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "query embedding" in late.value.details()
