"""A real ragjet server on localhost for the serving tests: uvicorn (REST, OpenAI routes, web UI) and gRPC in one
background loop, the real MiniLM embedder, a tiny random-weight chat Llama, the corpus uploaded over REST."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from benchmarks.servers import free_port
from ragjet.config import Settings, load_settings
from ragjet.rag.pipeline import RagPipeline
from ragjet.serve.app import create_app, make_gatekeeper
from ragjet.serve.auth import Gatekeeper
from ragjet.serve.grpc_server import start_grpc_server
from support.tiny_models import COLLECTION  # noqa: E402


@dataclass
class LiveServer:
    url: str
    grpc_target: str
    settings: Settings
    pipeline: RagPipeline
    loop: asyncio.AbstractEventLoop
    gatekeeper: Gatekeeper

    def upload(self, corpus_dir: Path, collection: str = COLLECTION, key: str | None = None) -> None:
        files = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in sorted(corpus_dir.iterdir())]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{self.url}/v1/collections/{collection}/documents"
        response = httpx.post(url, files=files, headers=headers, timeout=120)
        assert response.status_code == 200, response.text

    def engine_stats(self):  # type: ignore[no-untyped-def]
        return self.pipeline.engine_stats()


@contextmanager
def run_live_server(
    data_dir: Path,
    model_dir: Path,
    corpus_dir: Path,
    llm: dict[str, object] | None = None,
    rag: dict[str, object] | None = None,
    **serve: object,
) -> Iterator[LiveServer]:
    """Serve until the block ends; `serve` overrides the serve settings (auth is off unless asked for), `llm`
    and `rag` those sections'."""
    settings = load_settings(
        data_dir=data_dir,
        embed={"device": "cpu"},
        index={"device": "cpu"},
        llm={"model": str(model_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8, **(llm or {})},
        rag={"answer_cache_entries": 0, **(rag or {})},  # tests repeat questions to watch generation
        serve={
            "port": free_port(),
            "grpc_port": free_port(),
            "default_collection": COLLECTION,
            "auth_enabled": False,
            **serve,
        },
    )
    pipeline, gatekeeper = RagPipeline(settings), make_gatekeeper(settings)
    app = create_app(settings, pipeline, gatekeeper)
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.serve.port, log_level="warning"))
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> None:
        grpc_server = await start_grpc_server(pipeline, settings, gatekeeper)
        started.set()
        try:
            await http.serve()
        finally:
            await grpc_server.stop(grace=1)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.serve.port}"
    _wait_ready(url, started)
    yield LiveServer(url, f"127.0.0.1:{settings.serve.grpc_port}", settings, pipeline, loop, gatekeeper)
    http.should_exit = True
    thread.join(timeout=30)


def _wait_ready(url: str, started: threading.Event, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started.is_set():
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    raise TimeoutError(f"ragjet server at {url} not ready within {timeout_s}s")
