"""Serving tests share one real server (REST + gRPC on localhost) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path) -> Iterator[object]:
    from support.live_server import run_live_server  # imported here: the unit tests beside it need no stack

    data_dir = tmp_path_factory.mktemp("serve-data")
    roots = [tmp_path_factory.getbasetemp()]  # server-side ingestion may read the tests' temp folders
    with run_live_server(data_dir, tiny_llama_dir, corpus_dir, ingest_roots=roots) as server:
        server.upload(corpus_dir)
        yield server
