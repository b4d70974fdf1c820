"""Retrieval evaluation of the shipped Python BEIR set with the real MiniLM embedder and real collections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app
from ragjet.config import Settings
from ragjet.eval.datasets import load_dataset
from ragjet.eval.runner import evaluate
from ragjet.store import list_collections

pytestmark = pytest.mark.slow


async def test_retrieval_eval_finds_relevant_documents_and_cleans_up(eval_settings: Settings):
    result = await evaluate(eval_settings, load_dataset("python-beir"), generate=False)
    m = result.metrics
    assert result.num_queries == 22 and len(result.outcomes) == 22
    assert 0.0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1.0
    assert m["recall@10"] >= 0.7 and m["mrr@10"] >= 0.5 and 0.4 <= m["ndcg@10"] <= 1.0
    assert all(len(o.ranked_ids) == len(set(o.ranked_ids)) <= 10 for o in result.outcomes)
    assert set(result.latency_ms) >= {"embed", "search", "total"}
    assert list_collections(eval_settings.collections_dir) == []  # the scratch collection is gone


def test_cli_compare_bm25_on_and_off_writes_both_columns(eval_settings: Settings, tmp_path: Path):
    out = tmp_path / "eval.json"
    args = ["eval", "python-beir", "--limit", "5", "--compare", "retrieve.use_bm25=true,retrieve.use_bm25=false"]
    args += ["--set", f"data_dir={eval_settings.data_dir}", "--set", "embed.device=cpu", "--json", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # wide enough for whole labels
    assert result.exit_code == 0, result.output
    assert "retrieve.use_bm25=false" in result.output and "delta" in result.output
    body = json.loads(out.read_text())
    left, right = body["results"]
    assert left["label"] == "retrieve.use_bm25=true" and right["num_queries"] == 5
    assert body["delta"]["recall@10"] == pytest.approx(right["metrics"]["recall@10"] - left["metrics"]["recall@10"])
