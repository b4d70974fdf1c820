"""RAG fixtures: one pipeline for the session (real MiniLM, real store, tiny Llama) over the small corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from ragjet.config import Settings, load_settings
from support.tiny_models import COLLECTION


@pytest.fixture(scope="session")
def rag_settings(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path_factory.mktemp("ragjet-data"),
        chunk={"max_tokens": 64, "overlap_tokens": 8},
        embed={"device": "cpu", "max_wait_ms": 20.0},
        llm={"model": str(tiny_llama_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8},
        # Tests ask the same questions again to watch generation; the answer cache has its own tests.
        rag={"answer_cache_entries": 0},
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pipeline(rag_settings: Settings, corpus_dir: Path):
    from ragjet.rag.pipeline import RagPipeline  # imported here: the unit tests beside it run without the stack

    rag = RagPipeline(rag_settings)
    await rag.start()
    await rag.ingest(COLLECTION, sorted(corpus_dir.iterdir()))
    yield rag
    await rag.close()
