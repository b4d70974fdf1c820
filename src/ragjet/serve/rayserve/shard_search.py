"""Shards on Ray retrieval replicas: a `ShardSearcher` deployment per shard, and the ingress's runner that calls them.

A replica opens only its shard's folder (`Collection.open(<collection>, "shard-i")`, read-only: it never writes)
and answers the two per-shard calls of a query (retrieve/shard_runner.py) with plain, picklable values. The ingress
keeps its own read-only open of the collection, which loads no index: it knows which shards are readable, merges,
fuses, and reads the final chunks' text, so ranking is the in-process code path with only the calls moved.

A replica reopens its shard when a writer has saved it since (the manifest's version, one stat per call), as the
ingress's registry does for the whole collection. A call that fails, dies with its replica or outlasts
`ray.shard_timeout_s` leaves that shard unsearched, and the result's `degraded` names it, as on the local path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ray.exceptions import RayTaskError

from ragjet.retrieve.shard_runner import Answers, ShardQuery, ShardRunner, shard_failure
from ragjet.store import Collection
from ragjet.store.collection import collection_dir
from ragjet.store.sharded import shard_name

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponse

    from ragjet.index.bm25 import BM25Stats
    from ragjet.retrieve.shards import ShardCandidates

log = logging.getLogger(__name__)


class ShardSearcher:
    """A Ray Serve replica searching shard `shard` of collection `collection` under `root` (read-only)."""

    def __init__(self, root: Path, collection: str, shard: int, device: str = "cpu"):
        self.folder, self.shard_folder = collection_dir(root, collection), shard_name(shard)
        self.shard, self.device = shard, device
        self._version, self._collection = self._open()

    def stats(self, query: str) -> BM25Stats:
        return self._current().bm25.stats(query)

    def candidates(self, query: ShardQuery) -> ShardCandidates:
        return query.run(self.shard, self._current())

    def _current(self) -> Collection:
        """The shard as a writer last saved it (reopened when its version changed)."""
        if Collection.version_of(self.folder, self.shard_folder) != self._version:
            self._version, self._collection = self._open()
        return self._collection

    def _open(self) -> tuple[str, Collection]:
        version = Collection.version_of(self.folder, self.shard_folder)  # before opening: never newer than the data
        return version, Collection.open(self.folder, self.shard_folder, self.device)


class RayShards(ShardRunner):
    """The per-shard calls of one collection, sent to its `ShardSearcher` deployments (`handles[i]`: shard i)."""

    def __init__(self, name: str, handles: Sequence[DeploymentHandle], timeout_s: float):
        self.name, self.handles, self.timeout_s = name, handles, timeout_s

    def stats(self, shards: Sequence[int], query: str) -> Answers[BM25Stats]:
        return self._call(shards, "stats", query)

    def candidates(self, shards: Sequence[int], query: ShardQuery) -> Answers[ShardCandidates]:
        return self._call(shards, "candidates", query)

    def _call(self, shards: Sequence[int], method: str, argument: object) -> Answers[Any]:
        """`method(argument)` on every shard's replica at once, then each answer within what is left of one timeout.

        Blocks: run it off the event loop (the pipeline searches in a worker thread)."""
        missing = [number for number in shards if number >= len(self.handles)]
        failures = {number: f"{shard_name(number)} has no ShardSearcher replica" for number in missing}
        responses = {
            number: cast("DeploymentResponse[Any]", getattr(self.handles[number], method).remote(argument))
            for number in shards
            if number not in failures
        }
        deadline = time.monotonic() + self.timeout_s
        results: dict[int, Any] = {}
        for number, response in responses.items():
            try:
                results[number] = response.result(timeout_s=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # the replica's own error, its death, or the timeout: the others answer
                response.cancel()
                failures[number] = shard_failure(number, _cause(exc))
                log.warning("collection %r: %s", self.name, failures[number])
        return results, failures


def _cause(exc: Exception) -> BaseException:
    """The replica's own exception, not Ray's wrapper around it."""
    return exc.cause if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException) else exc


def shard_runners(handles: Mapping[str, Sequence[DeploymentHandle]], timeout_s: float) -> dict[str, ShardRunner]:
    """A `RayShards` per collection, for the ingress's collection registry."""
    return {name: RayShards(name, shard_handles, timeout_s) for name, shard_handles in handles.items()}
