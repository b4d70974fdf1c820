"""`ragjet ingest --ray`: through the real CLI on a local Ray instance (2 CPUs), searchable like a local ingest and
idempotent; without Ray Data installed, one line naming the extra and nothing written."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app
from ragjet.rag.ray_ingest import shutdown_ray


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RAGJET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGJET_EMBED__DEVICE", "cpu")
    monkeypatch.setenv("RAGJET_INDEX__NUM_SHARDS", "2")
    monkeypatch.setenv("COLUMNS", "300")  # rich tables keep whole paths
    return CliRunner()


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="Ray Data is the optional extra ragjet[ray]")
    pytest.importorskip("ray.data", reason="Ray Data is the optional extra ragjet[ray]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        shutdown_ray()


@pytest.mark.ray
def test_ingest_on_ray_then_search_and_rerun(cluster, cli: CliRunner, corpus_dir: Path) -> None:
    result = cli.invoke(app, ["ingest", str(corpus_dir), "--ray", "--ray-actors", "2", "-c", "facts"])
    assert result.exit_code == 0, result.output
    assert re.search(r"added\s+│ 3", result.output), result.output

    found = cli.invoke(app, ["search", "Who designed the Fresnel lens?", "-c", "facts", "-k", "1", "--json"])
    assert found.exit_code == 0 and "lighthouse.md" in found.output, found.output

    again = cli.invoke(app, ["ingest", str(corpus_dir), "--ray", "-c", "facts"])
    assert again.exit_code == 0 and re.search(r"unchanged\s+│ 3", again.output), again.output
    assert re.search(r"chunks written\s+│ 0", again.output), again.output


def test_ingest_on_ray_without_ray_names_the_extra(
    cli: CliRunner, tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # the injected fault: `import ray` fails as if not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = cli.invoke(app, ["ingest", str(corpus_dir), "--ray", "-c", "facts"])
    assert result.exit_code == 2, result.output
    assert "pip install 'ragjet[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data" / "collections").exists()  # failed before loading or opening anything
