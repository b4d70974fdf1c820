"""Shards on Ray retrieval replicas (a local Ray instance, 2 CPUs): one `ShardSearcher` replica per shard of a
synthetic 2-shard collection ranks exactly as the in-process sharded path; a replica that fails degrades the result
and names its shard."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is the optional extra ragjet[ray]")

from ray import serve
from ray.serve.handle import DeploymentHandle

from benchmarks.servers import free_port
from ragjet.config import RetrieveSettings, Settings, load_settings
from ragjet.embed.embedder import Embedder
from ragjet.rag.ray_ingest import shutdown_ray
from ragjet.retrieve import Retriever
from ragjet.serve.rayserve.app import build_app, shard_searchers
from ragjet.serve.rayserve.shard_search import RayShards
from ragjet.store import AnyCollection
from ragjet.store.sharded import shard_of
from support.documents import StubEmbedder, synthetic_sharded, words

pytestmark = pytest.mark.ray
DIM = 32
EMBEDDER = cast(Embedder, StubEmbedder(dim=DIM))


def settings_for(data_dir: Path) -> Settings:
    return load_settings(
        data_dir=data_dir, index={"device": "cpu"}, llm={"device": "cpu"},
        ray={"shard_collections": ["n2"], "shard_num_cpus": 0, "shard_timeout_s": 20},
    )  # fmt: skip


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> AnyCollection:
    settings = settings_for(tmp_path_factory.mktemp("ray-shards"))
    return synthetic_sharded(settings.collections_dir, "n2", 2, 200, DIM)


@pytest.fixture(scope="module")
def handles(collection: AnyCollection) -> Iterator[list[DeploymentHandle]]:
    """Each shard's ShardSearcher, as `build_app` binds them, run as an application of its own."""
    settings = settings_for(collection.folder.parent.parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        apps = shard_searchers(settings, "n2")
        yield [serve.run(app, name=f"shards-{shard}", route_prefix=None) for shard, app in enumerate(apps)]
    finally:
        serve.shutdown()
        shutdown_ray()


def test_the_ingress_binds_one_searcher_per_shard(collection: AnyCollection) -> None:
    ingress = build_app(settings_for(collection.folder.parent.parent))._bound_deployment
    searchers = ingress.init_args[2]["n2"]
    assert [s._bound_deployment.name for s in searchers] == ["shard-n2-0", "shard-n2-1"]
    assert [s._bound_deployment.init_args[2] for s in searchers] == [0, 1]


def test_shard_collections_naming_a_collection_that_is_not_sharded_is_refused_at_build(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)  # names "n2", which this data dir does not hold
    with pytest.raises(ValueError, match="ray.shard_collections names 'n2', which is not a sharded collection"):
        build_app(settings)


def test_shard_replicas_rank_as_the_local_shards(collection: AnyCollection, handles: list[DeploymentHandle]) -> None:
    settings = RetrieveSettings(coarse_k=12)
    local = Retriever(collection, EMBEDDER, settings)
    remote = Retriever(collection, EMBEDDER, settings, shards=RayShards("n2", handles, 20.0))
    rng = np.random.default_rng(11)
    sources = set()
    for _ in range(8):
        vector = rng.standard_normal(DIM).astype(np.float32)
        query, vector = words(rng, 4), vector / np.linalg.norm(vector)
        expected, got = local.search_vector(query, vector, 10), remote.search_vector(query, vector, 10)
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in expected.hits]
        assert [h.score for h in got.hits] == pytest.approx([h.score for h in expected.hits], abs=1e-6)
        assert [h.dense_score for h in got.hits] == pytest.approx([h.dense_score for h in expected.hits], abs=1e-6)
        assert [h.text for h in got.hits] == [h.text for h in expected.hits]
        assert got.fallback is None and expected.fallback is None
        sources |= {shard_of(h.source, 2) for h in got.hits}
    assert sources == {0, 1}


def test_a_failing_shard_replica_degrades_the_result_and_names_it(
    collection: AnyCollection, handles: list[DeploymentHandle]
) -> None:
    """Last in this module: it removes shard-1's folder, so its replica fails every call from now on."""
    shutil.rmtree(collection.folder / "shard-1")
    remote = Retriever(collection, EMBEDDER, RetrieveSettings(), shards=RayShards("n2", handles, 20.0))
    vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    result = remote.search_vector("w001 w002", vector, 6)
    assert result.fallback is not None and result.fallback.startswith("shard-1 failed (CollectionNotFoundError")
    assert result.fallback.endswith("its chunks were not searched")
    assert result.hits and all(shard_of(h.source, 2) == 0 for h in result.hits)
