"""`ragjet profile` in process: real MiniLM embedder, real collection, a tiny random-weight Llama."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ragjet.config import load_settings

# The pipeline sits on the embed, ingest pipeline, retrieve and llm packages: skip until they exist.
for _module in ("ragjet.embed.batcher", "ragjet.ingest.pipeline", "ragjet.retrieve", "ragjet.llm.backends"):
    pytest.importorskip(_module)

from ragjet.cli import app  # noqa: E402
from ragjet.eval.retrieval import RetrievalOnly  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow


def rag_builders():
    """The tiny-model builders of tests/rag/conftest.py (a conftest is not importable as a module)."""
    path = Path(__file__).parents[1] / "rag" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ragjet_rag_test_builders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_writes_a_table_a_png_and_a_json_report(tmp_path: Path):
    builders = rag_builders()
    model_dir = builders.write_tiny_llama(tmp_path / "llama", builders.train_tokenizer(list(builders.CORPUS.values())))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in builders.CORPUS.items():
        (corpus / name).write_text(text)
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "embed.device": "cpu",
        "llm.model": str(model_dir),
        "llm.device": "cpu",
        "llm.max_model_len": "1024",
    }
    settings = load_settings(
        data_dir=tmp_path / "data", embed={"device": "cpu"}, llm={"model": str(model_dir), "device": "cpu"}
    )
    asyncio.run(_ingest(settings, "facts", sorted(corpus.iterdir())))

    args = ["profile", "--collection", "facts", "-n", "6", "-c", "3", "--max-tokens", "8", "--out", str(tmp_path / "p")]
    for path, value in overrides.items():
        args += ["--set", f"{path}={value}"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "bottleneck:" in result.output and "P99 ms" in result.output
    body = json.loads((tmp_path / "p" / "profile.json").read_text())
    report = body["report"]
    assert report["num_requests"] == 6 and report["concurrency"] == 3 and body["num_errors"] == 0
    assert report["bottleneck"] in {s["stage"] for s in report["stages"]}
    assert report["total"]["p50_ms"] > 0 and sum(s["share"] for s in report["stages"]) == pytest.approx(1.0)
    assert imread(tmp_path / "p" / "profile.png").shape[:2] == (450, 1100)


async def _ingest(settings, collection: str, paths: list[Path]) -> None:
    retrieval = RetrievalOnly(settings)
    await retrieval.start()
    try:
        await retrieval.ingest(collection, paths)
    finally:
        await retrieval.close()
