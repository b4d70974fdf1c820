"""The retriever's shard-runner seam: a runner other than the default decides only where the per-shard calls run;
ranking and the degraded note come out of the retriever the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest

from ragjet.config import RetrieveSettings
from ragjet.embed.embedder import Embedder
from ragjet.index.bm25 import BM25Stats
from ragjet.retrieve import Retriever
from ragjet.retrieve.shard_runner import Answers, LocalShards, ShardQuery
from ragjet.retrieve.shards import ShardCandidates
from ragjet.store import AnyCollection
from ragjet.store.sharded import shard_of
from support.documents import StubEmbedder, synthetic_sharded, words

DIM = 32


class FailingShard(LocalShards):
    """The local runner, except that one shard fails one of the two calls, as a lost remote shard would."""

    def __init__(self, collection: AnyCollection, shard: int, call: str):
        super().__init__(collection)
        self.shard, self.call = shard, call

    def stats(self, shards: Sequence[int], query: str) -> Answers[BM25Stats]:
        return self._failing("stats", *super().stats(shards, query))

    def candidates(self, shards: Sequence[int], query: ShardQuery) -> Answers[ShardCandidates]:
        return self._failing("candidates", *super().candidates(shards, query))

    def _failing(self, call: str, results: dict, failures: dict[int, str]) -> tuple[dict, dict[int, str]]:
        if call == self.call and self.shard in results:
            del results[self.shard]
            failures[self.shard] = f"shard-{self.shard} failed (ConnectionError: gone)"
        return results, failures


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> AnyCollection:
    return synthetic_sharded(tmp_path_factory.mktemp("runner"), "n2", 2, 60, DIM)


@pytest.mark.parametrize("call", ["stats", "candidates"])
def test_a_shard_the_runner_loses_is_named_and_left_out(collection: AnyCollection, call: str) -> None:
    embedder = cast(Embedder, StubEmbedder(dim=DIM))
    retriever = Retriever(collection, embedder, RetrieveSettings(), shards=FailingShard(collection, 1, call))
    rng = np.random.default_rng(5)
    vector = rng.standard_normal(DIM).astype(np.float32)
    result = retriever.search_vector(words(rng, 3), vector / np.linalg.norm(vector), 8)
    assert result.fallback == "shard-1 failed (ConnectionError: gone); its chunks were not searched"
    assert result.hits and all(shard_of(h.source, 2) == 0 for h in result.hits)
