"""`ragjet ingest`, `search` and `collections` through the real CLI app, on real files and models."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RAGJET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGJET_EMBED__DEVICE", "cpu")
    monkeypatch.setenv("COLUMNS", "300")  # rich tables keep whole paths
    return CliRunner()


def test_ingest_search_list_and_delete(cli: CliRunner, corpus_dir: Path) -> None:
    result = cli.invoke(app, ["ingest", str(corpus_dir), "--collection", "facts"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output and "3" in result.output

    result = cli.invoke(app, ["search", "Who designed the Fresnel lens?", "-c", "facts", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert '"rank": 1' in result.output and "lighthouse.md" in result.output

    listed = cli.invoke(app, ["collections"])
    assert listed.exit_code == 0 and "facts" in listed.output
    stats = cli.invoke(app, ["collections", "stats", "facts"])
    assert stats.exit_code == 0 and "bread.md" in stats.output

    assert cli.invoke(app, ["collections", "delete", "facts", "--yes"]).exit_code == 0
    assert "no collections yet" in cli.invoke(app, ["collections"]).output


def test_user_errors_are_one_line_with_exit_code_2(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["search", "lava", "--collection", "nope"])
    assert result.exit_code == 2 and "no collection named 'nope'" in result.output
    assert result.output.strip().endswith("[collection_not_found]")  # the code REST and gRPC give it too
    assert cli.invoke(app, ["collections", "stats", "nope"]).exit_code == 2

    missing = cli.invoke(app, ["ingest", str(tmp_path / "missing.md"), "-c", "facts"])
    assert missing.exit_code == 1 and "missing.md: no such file or directory" in missing.output
