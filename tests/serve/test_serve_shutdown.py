"""Graceful shutdown of a real `ragjet serve` process: on SIGTERM the answers in flight, over HTTP and
gRPC, are finished and delivered, new connections are refused, and the process exits by itself."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from support.stack import require_layers

require_layers()

from ragjet.bench.overload import ServerProcess, server_process, upload  # noqa: E402
from ragjet.serve.proto import ragjet_pb2 as pb  # noqa: E402
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc  # noqa: E402
from support.tiny_models import COLLECTION  # noqa: E402

MAX_TOKENS = 600  # long enough to still be decoding when the signal arrives
QUESTION = "Which lava flows quickly?"


@pytest.fixture
def server(tmp_path: Path, tiny_llama_dir: Path, corpus_dir: Path) -> Iterator[ServerProcess]:
    settings: dict[str, dict[str, object]] = {
        "llm": {"model": str(tiny_llama_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8},
        "embed": {"device": "cpu"},
        "index": {"device": "cpu"},
        "serve": {"default_collection": COLLECTION, "auth_enabled": False, "log_level": "warning"},
    }
    with server_process(settings, tmp_path / "data") as process:
        upload(process.url, COLLECTION, sorted(corpus_dir.iterdir()))
        yield process


def test_sigterm_finishes_the_answers_in_flight_then_exits(server: ServerProcess) -> None:
    streaming, results = threading.Event(), {}
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": MAX_TOKENS, "stream": True,
            "ragjet": {"top_k": 1}}  # fmt: skip

    def http_stream() -> None:
        lines = []
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if '"content"' in line:
                    streaming.set()
                if line:
                    lines.append(line)
        results["http"] = lines

    def grpc_ask() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            request = pb.AskRequest(question=QUESTION, max_tokens=MAX_TOKENS, top_k=1)
            results["grpc"] = list(pb_grpc.RagJetStub(channel).Ask(request, timeout=120))

    threads = [threading.Thread(target=f) for f in (http_stream, grpc_ask)]
    for t in threads:
        t.start()
    assert streaming.wait(60), "the answer never started streaming"
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(120)

    http = results["http"]
    assert http[-1] == "data: [DONE]"
    closing = json.loads(http[-2].removeprefix("data: "))
    assert closing["choices"][0]["finish_reason"] in ("stop", "length") and closing["ragjet"]["degraded"] is None
    done = results["grpc"][-1].done
    assert done.finish_reason in ("stop", "length") and not done.degraded and done.completion_tokens > 0
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=5)
