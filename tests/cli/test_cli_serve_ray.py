"""`ragjet serve --ray` without Ray Serve installed: one line naming the extra, exit 2, nothing started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app


def test_serve_on_ray_without_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGJET_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ray", None)  # the injected fault: `import ray` fails as if not installed
    result = CliRunner().invoke(app, ["serve", "--ray", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "pip install 'ragjet[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "collections").exists()  # failed before opening anything
