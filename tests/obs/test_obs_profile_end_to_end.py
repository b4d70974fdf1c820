"""`ragjet profile` in process: real MiniLM embedder, real collection, a tiny random-weight Llama."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ragjet.config import Settings, load_settings
from support.stack import require_layers
from support.tiny_models import CORPUS, train_tokenizer, write_tiny_llama

require_layers()  # the whole RAG stack

from ragjet.cli import app  # noqa: E402
from ragjet.obs.profile import analyze  # noqa: E402
from ragjet.obs.workload import http_request, run_workload  # noqa: E402
from ragjet.rag.pipeline import RagPipeline  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow
COLLECTION = "facts"


@pytest.fixture(scope="module")
def workload_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with a tiny Llama and a data dir holding the ingested collection "facts"."""
    root = tmp_path_factory.mktemp("profile")
    tokenizer = train_tokenizer(list(CORPUS.values()))
    model_dir = write_tiny_llama(root / "llama", tokenizer)
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in CORPUS.items():
        (corpus / name).write_text(text)
    settings = load_settings(
        data_dir=root / "data",
        embed={"device": "cpu"},
        llm={"model": str(model_dir), "device": "cpu", "max_model_len": 1024},
        serve={"auth_enabled": False},  # an in-process workload, no keys
    )
    asyncio.run(_ingest(settings, sorted(corpus.iterdir())))
    return settings


async def _ingest(settings: Settings, paths: list[Path]) -> None:
    retrieval = RagPipeline(settings)
    await retrieval.start(generate=False)
    try:
        await retrieval.ingest(COLLECTION, paths)
    finally:
        await retrieval.close()


def test_profile_writes_a_table_a_png_and_a_json_report(workload_settings: Settings, tmp_path: Path):
    out = tmp_path / "p"
    args = ["profile", "--collection", COLLECTION, "-n", "6", "-c", "3", "--max-tokens", "8", "--out", str(out)]
    for path, value in [
        ("data_dir", workload_settings.data_dir),
        ("embed.device", "cpu"),
        ("llm.model", workload_settings.llm.model),
        ("llm.device", "cpu"),
        ("llm.max_model_len", 1024),
    ]:
        args += ["--set", f"{path}={value}"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "bottleneck:" in result.output and "P99 ms" in result.output
    body = json.loads((out / "profile.json").read_text())
    report = body["report"]
    assert report["num_requests"] == 6 and report["concurrency"] == 3 and body["num_errors"] == 0
    assert report["bottleneck"] in {s["stage"] for s in report["stages"]}
    assert report["total"]["p50_ms"] > 0 and sum(s["share"] for s in report["stages"]) == pytest.approx(1.0)
    assert imread(out / "profile.png").shape[:2] == (450, 1100)


async def test_http_workload_reads_the_servers_timings(workload_settings: Settings):
    from ragjet.rag.pipeline import RagPipeline
    from ragjet.serve.app import create_app

    pipeline = RagPipeline(workload_settings)
    await pipeline.start()  # the ASGI transport runs no lifespan, so the test starts and closes the pipeline
    try:
        transport = httpx.ASGITransport(app=create_app(workload_settings, pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://ragjet.test") as client:
            run = await run_workload(http_request(client, COLLECTION, 8), ["Who designed the Fresnel lens?"], 4, 2)
    finally:
        await pipeline.close()
    assert not run.errors and len(run.timings) == 4
    assert all(t["total_ms"] > 0 and t["embed_ms"] > 0 for t in run.timings)
    assert analyze(run.timings, run.wall_s, 2).num_requests == 4
