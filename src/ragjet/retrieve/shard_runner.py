"""Where a sharded collection's per-shard calls run: threads in this process, or another process per shard.

A query reaches every shard twice (shards.py): for its BM25 statistics, then for its candidates under the merged
statistics. A runner makes one of those calls on a set of shards and answers with each shard's result and, for each
shard that failed, why. Everything after (merging, fusion, the degraded note) stays in the retriever, whichever
runner answered, so the local and remote paths rank alike by construction. `LocalShards` is the default; the Ray
Serve app's runner (serve/rayserve/shard_search.py) sends the same calls to one replica per shard.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ragjet.index.bm25 import BM25Stats
from ragjet.retrieve.shards import ShardCandidates, shard_candidates
from ragjet.store import AnyCollection, Collection
from ragjet.store.sharded import shard_name

log = logging.getLogger(__name__)
T = TypeVar("T")
Answers = tuple[dict[int, T], dict[int, str]]  # (result by shard, why by shard that failed)


@dataclass(frozen=True, slots=True)
class ShardQuery:
    """The candidates call's arguments, the same for every shard; plain values, so they can be pickled."""

    query: str
    vector: np.ndarray  # (dim,) the embedded query
    coarse_k: int
    stats: BM25Stats  # the collection's: merged over the shards that answered the statistics call
    use_bm25: bool
    filters: Mapping[str, object] | None = None

    def run(self, shard: int, collection: Collection) -> ShardCandidates:
        """The candidates of `collection`, shard number `shard` of its collection."""
        return shard_candidates(shard, collection, query=self.query, vector=self.vector, coarse_k=self.coarse_k,
                                stats=self.stats, use_bm25=self.use_bm25, filters=self.filters)  # fmt: skip


def shard_failure(shard: int, exc: BaseException) -> str:
    """How a failed shard is named in a degraded result, whichever runner saw it fail."""
    return f"{shard_name(shard)} failed ({type(exc).__name__}: {exc})"


class ShardRunner(ABC):
    """Makes the two per-shard calls of a query on the shards named (each readable by the caller's collection)."""

    @abstractmethod
    def stats(self, shards: Sequence[int], query: str) -> Answers[BM25Stats]: ...

    @abstractmethod
    def candidates(self, shards: Sequence[int], query: ShardQuery) -> Answers[ShardCandidates]: ...


class LocalShards(ShardRunner):
    """The shards of a collection opened in this process, searched by a thread each.

    A collection of one shard runs inline and its errors propagate: with nothing else to answer, the error is the
    answer.
    """

    def __init__(self, collection: AnyCollection):
        self.collection = collection
        num_shards = collection.index_params.num_shards
        self._pool = ThreadPoolExecutor(num_shards, thread_name_prefix="ragjet-shard") if num_shards > 1 else None

    def stats(self, shards: Sequence[int], query: str) -> Answers[BM25Stats]:
        return self._on_shards(shards, lambda _, shard: shard.bm25.stats(query))

    def candidates(self, shards: Sequence[int], query: ShardQuery) -> Answers[ShardCandidates]:
        return self._on_shards(shards, query.run)

    def _on_shards(self, numbers: Sequence[int], work: Callable[[int, Collection], T]) -> Answers[T]:
        shards = {number: self.collection.shards[number] for number in numbers}
        if self._pool is None:
            return {number: work(number, shard) for number, shard in shards.items()}, {}
        futures = {number: self._pool.submit(work, number, shard) for number, shard in shards.items()}
        results, failures = {}, {}
        for number, future in futures.items():
            try:
                results[number] = future.result()
            except Exception as exc:  # a damaged shard: the others answer, and the result says which one did not
                failures[number] = shard_failure(number, exc)
                log.warning("collection %r: %s", self.collection.name, failures[number])
        return results, failures
