"""Store fixtures: the real MiniLM embedder and chunker, loaded once, and a corpus folder each test may edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.ingest.chunker import Chunker
from ragjet.store import Collection


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.load("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def chunker(embedder: Embedder) -> Chunker:
    return Chunker(embedder.tokenizer, max_tokens=64, overlap_tokens=8)


@pytest.fixture
def docs(tmp_path: Path, corpus_dir: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(corpus_dir, folder)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "collections"


@pytest.fixture
def collection(root: Path, embedder: Embedder) -> Collection:
    return Collection.create(root, "facts", embedder.model_id, embedder.dim, IndexParams())
