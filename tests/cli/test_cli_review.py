"""`ragjet review` over the SQLite queue the server writes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ragjet.cli import app
from ragjet.rag.review import ReviewQueue
from ragjet.rag.types import Answer, Citation, StageTimings


def test_list_show_resolve(tmp_path: Path) -> None:
    citation = Citation(1, "c1", "/docs/bread.md", "Bread", "", None, 0.5, "Sourdough rises ...")
    flagged = Answer("r", "Yeast [1].", [citation], StageTimings(), confidence=0.1, needs_review=True)
    item_id = ReviewQueue(tmp_path / "review.db").add("default", "kitchen", "Why does sourdough rise?", flagged)
    env = {"RAGJET_DATA_DIR": str(tmp_path)}
    runner = CliRunner()

    listed = runner.invoke(app, ["review", "list"], env=env)
    assert listed.exit_code == 0 and item_id in listed.stdout and "kitchen" in listed.stdout
    shown = runner.invoke(app, ["review", "show", item_id], env=env)
    assert shown.exit_code == 0 and "Yeast [1]." in shown.stdout and "/docs/bread.md" in shown.stdout
    resolved = runner.invoke(app, ["review", "resolve", item_id, "--answer", "Wild yeast ferments it [1]."], env=env)
    assert resolved.exit_code == 0
    assert ReviewQueue(tmp_path / "review.db").get("default", item_id).resolution == "Wild yeast ferments it [1]."
    assert item_id not in runner.invoke(app, ["review", "list"], env=env).stdout  # no longer pending

    missing = runner.invoke(app, ["review", "show", "nope"], env=env)
    assert missing.exit_code == 2 and "nope" in missing.stderr
