"""Eval fixtures: settings for end-to-end runs with the real MiniLM embedder, on CPU, in a temporary data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragjet.config import Settings, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def eval_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", embed={"device": "cpu"}, index={"device": "cpu"})
