"""Ray Data ingest on a local Ray instance (2 CPUs) against the local ingest it must match: the same documents,
chunk ids, texts, vectors and search results in a 2-shard collection as in a plain one; a re-run that changes
nothing; a run killed by a failing embed batch that, run again, ends where one clean run does."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Data is the optional extra ragjet[ray]")
pytest.importorskip("ray.data", reason="Ray Data is the optional extra ragjet[ray]")

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.errors import IngestError
from ragjet.rag.ingestion import IngestReport, ingest_paths
from ragjet.rag.ray_ingest import RayIngestOptions, ingest_paths_ray, shutdown_ray
from ragjet.retrieve import Retriever
from ragjet.store import AnyCollection, Collection, EmbedderMismatchError, ShardedCollection, create_collection
from support.tiny_models import CORPUS

pytestmark = pytest.mark.ray
NUM_NOTES = 8
FAULT = "harbour 5"  # a phrase only note05.md holds: the embed batch carrying it fails
QUESTIONS = ["Who designed the Fresnel lens?", "harbour 3 lamp", "how does bread rise", "basalt lava flows"]
# Two actors and batches of two files, so rows come back from several batches and actors and must be put in order.
OPTIONS = RayIngestOptions(num_embed_actors=2, files_per_batch=2, files_per_embed_batch=2)
load_actor_embedder = functools.partial(Embedder.load, "all-MiniLM-L6-v2", "cpu", "fp32")


class FaultyEmbedder:
    """The injected fault: the real embedder, except that a batch holding `marker` raises."""

    def __init__(self, marker: str):
        self.inner, self.marker = load_actor_embedder(), marker

    def embed(self, texts: list[str]) -> np.ndarray:
        if any(self.marker in text for text in texts):
            raise RuntimeError(f"injected fault: a batch holding {self.marker!r}")
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # FaultyEmbedder travels to the actors
    try:
        yield
    finally:
        shutdown_ray()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_actor_embedder()  # fp32: batches of other sizes then change vectors by rounding only


@pytest.fixture(scope="module")
def chunker(embedder: Embedder) -> Chunker:
    return Chunker(embedder.tokenizer, max_tokens=64, overlap_tokens=8)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eleven files: the three-topic corpus, eight multi-chunk notes, and an empty file both paths skip."""
    folder = tmp_path_factory.mktemp("ray-docs")
    for name, text in CORPUS.items():
        (folder / name).write_text(text)
    for i in range(NUM_NOTES):
        body = "\n\n".join(f"Note {i}.{p}: harbour {i} keeps lamp {p} lit through the storm." for p in range(8))
        (folder / f"note{i:02d}.md").write_text(f"# Note {i}\n\n{body}\n")
    (folder / "empty.md").write_text("")
    return folder


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, docs: Path, embedder: Embedder, chunker: Chunker):
    """The reference: a plain collection ingested by the local path."""
    root = tmp_path_factory.mktemp("local")
    collection = Collection.create(root, "local", embedder.model_id, embedder.dim, IndexParams())
    return collection, ingest_paths(collection, [docs], embedder, chunker)


@pytest.fixture
def sharded(tmp_path: Path, embedder: Embedder) -> ShardedCollection:
    collection = create_collection(tmp_path, "ray", embedder.model_id, embedder.dim, IndexParams(num_shards=2))
    assert isinstance(collection, ShardedCollection)
    return collection


def stored(collection: AnyCollection) -> dict[int, tuple[str, str, str, np.ndarray]]:
    """Every chunk by its collection-wide id: (chunk_id, source, text, vector)."""
    rows = {}
    for shard in collection.shards.values():
        with sqlite3.connect(shard.folder / "chunks.db") as conn:
            for id_, chunk_id, source, text, vector in conn.execute(
                "SELECT c.id, c.chunk_id, d.source, c.text, c.vector FROM chunks c "
                "JOIN documents d ON d.id = c.document_id"
            ):
                rows[id_] = (chunk_id, source, text, np.frombuffer(vector, np.float32))
    return rows


def assert_same_state(collection: AnyCollection, reference: AnyCollection) -> None:
    ours, theirs = stored(collection), stored(reference)
    assert sorted(ours) == sorted(theirs)  # the same collection-wide chunk ids
    for id_, (chunk_id, source, text, vector) in theirs.items():
        assert ours[id_][:3] == (chunk_id, source, text), id_
        np.testing.assert_allclose(ours[id_][3], vector, atol=2e-6)
    assert [(d.source, d.content_hash, d.num_chunks) for d in collection.documents()] == [
        (d.source, d.content_hash, d.num_chunks) for d in reference.documents()
    ]


def counts(report: IngestReport) -> tuple[int, ...]:
    return report.num_added, report.num_updated, report.num_unchanged, report.num_skipped, report.num_chunks


def test_ray_ingest_matches_the_local_path_and_a_rerun_changes_nothing(
    cluster, local, sharded, docs, embedder, chunker
) -> None:
    reference, local_report = local
    report = ingest_paths_ray(sharded, [docs], embedder, chunker, load_actor_embedder, OPTIONS)
    assert counts(report) == counts(local_report) == (3 + NUM_NOTES, 0, 0, 1, local_report.num_chunks)
    assert report.errors == local_report.errors and "empty.md: is empty" in report.errors[0]
    assert_same_state(sharded, reference)
    assert all(shard.documents() for shard in sharded.shards.values())  # both shards hold documents

    reopened = ShardedCollection.open(sharded.folder.parent, "ray")
    for question in QUESTIONS:
        ours = Retriever(reopened, embedder, RetrieveSettings()).search(question, top_k=5).hits
        theirs = Retriever(reference, embedder, RetrieveSettings()).search(question, top_k=5).hits
        assert [h.chunk_id for h in ours] == [h.chunk_id for h in theirs], question
        np.testing.assert_allclose([h.dense_score for h in ours], [h.dense_score for h in theirs], rtol=1e-5)

    generations = [shard.store.generation() for shard in sharded.shards.values()]
    rerun = ingest_paths_ray(sharded, [docs], embedder, chunker, load_actor_embedder, OPTIONS)
    assert counts(rerun) == (0, 0, 3 + NUM_NOTES, 1, 0)
    assert [shard.store.generation() for shard in sharded.shards.values()] == generations  # not one write
    assert_same_state(sharded, reference)


def test_a_run_killed_by_a_failing_batch_reruns_to_the_clean_state(cluster, local, sharded, docs, embedder, chunker):
    reference, _ = local
    faulty = functools.partial(FaultyEmbedder, FAULT)
    with pytest.raises(ray.exceptions.RayError, match="injected fault"):
        ingest_paths_ray(sharded, [docs], embedder, chunker, faulty, OPTIONS)

    order = [d.source for d in _in_file_order(reference, docs)]
    kept = {d.source for d in sharded.documents()}
    assert str(docs / "note05.md") not in kept and kept == set(order[: len(kept)])  # a prefix of the file list
    report = ingest_paths_ray(sharded, [docs], embedder, chunker, load_actor_embedder, OPTIONS)
    assert report.num_unchanged == len(kept) and report.num_added == 3 + NUM_NOTES - len(kept)
    assert_same_state(sharded, reference)


def test_bad_input_is_refused_and_stored_documents_stay(cluster, tmp_path, sharded, docs, embedder, chunker) -> None:
    other = create_collection(tmp_path, "other", "another-model:0", embedder.dim, IndexParams(num_shards=2))
    with pytest.raises(EmbedderMismatchError, match="another-model"):
        ingest_paths_ray(other, [docs], embedder, chunker, load_actor_embedder, OPTIONS)
    assert other.documents() == []

    with pytest.raises(IngestError, match="empty.md: is empty"):
        ingest_paths_ray(sharded, [docs], embedder, chunker, load_actor_embedder, OPTIONS, on_error="raise")
    assert [Path(d.source).name for d in sharded.documents()] == ["bread.md"]  # the one file before it, stored


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="num_embed_actors"):
        RayIngestOptions(num_embed_actors=0)
    with pytest.raises(ValueError, match="num_gpus_per_actor"):
        RayIngestOptions(num_gpus_per_actor=-1)


def _in_file_order(collection: AnyCollection, docs: Path):
    files = sorted(str(p) for p in docs.iterdir())
    return sorted(collection.documents(), key=lambda d: files.index(d.source))
