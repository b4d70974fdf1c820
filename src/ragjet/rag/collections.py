"""Open collections and their retrievers, cached per name and reopened when a collection changes on disk.

Many requests search one collection at once, so each name maps to one shared (collection, retriever)
pair; a lock per name serialises writers (ingest, deletes) while readers keep the pair they hold. Readers
never take that lock: SQLite in WAL mode gives them a consistent snapshot while a writer works. An
ingest waits its turn; a delete, a quick request a user waits on, is refused with CollectionBusyError
rather than wait behind a long ingest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragjet.config import Settings
from ragjet.embed.embedder import Embedder
from ragjet.index import IndexParams
from ragjet.retrieve import Retriever
from ragjet.retrieve.cross_encoder import CrossEncoder
from ragjet.retrieve.shard_runner import ShardRunner
from ragjet.store import (
    AnyCollection,
    CollectionBusyError,
    CollectionInfo,
    CollectionNotFoundError,
    DocumentInfo,
    collection_version,
    create_collection,
    delete_collection,
    list_collections,
    open_collection,
    repair_collection,
)


@dataclass(frozen=True, slots=True)
class _Open:
    collection: AnyCollection
    retriever: Retriever
    version: str  # the on-disk state this pair was opened at


class CollectionRegistry:
    def __init__(self, settings: Settings, root: Path | None = None):
        self.settings = settings
        self.root = root if root is not None else settings.collections_dir
        self.embedder: Embedder | None = None  # set by the pipeline once loaded; retrieval needs it
        self.cross_encoder: CrossEncoder | None = None  # set by the pipeline when retrieve.rerank names one
        self.shard_runners: dict[str, ShardRunner] = {}  # collections searched elsewhere (Ray shard replicas)
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()  # guards _open and _writers
        self._writers: dict[str, threading.Lock] = {}

    def retriever(self, name: str) -> Retriever:
        """The shared retriever of `name`, reopened if the collection changed since it was opened.

        Raises CollectionNotFoundError for an unknown name.
        """
        version = collection_version(self.root, name)
        with self._lock:
            cached = self._open.get(name)
            if cached is not None and cached.version == version:
                return cached.retriever
        collection = self._collection(name)
        if self.embedder is None:
            raise RuntimeError("the RAG pipeline is not started: await pipeline.start() first")
        retriever = Retriever(
            collection, self.embedder, self.settings.retrieve, self.cross_encoder, self.shard_runners.get(name)
        )
        opened = _Open(collection, retriever, version)
        with self._lock:
            self._open[name] = opened
        return opened.retriever

    def version(self, name: str) -> str:
        """Changes whenever a writer saves `name` (what the answer cache keys on)."""
        return collection_version(self.root, name)

    def infos(self) -> list[CollectionInfo]:
        return list_collections(self.root)

    def create(self, name: str) -> CollectionInfo:
        if self.embedder is None:
            raise RuntimeError("the RAG pipeline is not started: await pipeline.start() first")
        params = IndexParams.from_settings(self.settings.index)
        return create_collection(
            self.root, name, self.embedder.model_id, self.embedder.dim, params, self.settings.index.device
        ).info()

    def _collection(self, name: str) -> AnyCollection:
        """Open `name` with its index on this server's index.device (the collection stores no device)."""
        return open_collection(self.root, name, self.settings.index.device)

    def delete(self, name: str) -> None:
        with self._writer(name, wait=False):
            delete_collection(self.root, name)
            self._forget(name)

    def info(self, name: str) -> CollectionInfo:
        return self._collection(name).info()

    def repair(self, name: str) -> CollectionInfo:
        """Rebuild `name`'s manifest and indexes from its chunk store; waits for a running writer."""
        with self._writer(name):
            info = repair_collection(self.root, name, self.settings.index.device)
            self._forget(name)
        return info

    def chunk_texts(self, name: str, limit: int) -> list[str]:
        """Up to `limit` of `name`'s chunk texts, by chunk id within each shard (what INT8 calibration reads)."""
        texts: list[str] = []
        for shard in self._collection(name).shards.values():
            for _, _, batch in shard.store.iter_chunks():
                texts += batch[: limit - len(texts)]
                if len(texts) >= limit:
                    return texts
        return texts

    def documents(self, name: str) -> list[DocumentInfo]:
        return self._collection(name).documents()

    def delete_document(self, name: str, source: str) -> bool:
        with self._writer(name, wait=False):
            deleted = self._collection(name).delete_document(source)
            self._forget(name)
            return deleted

    @contextmanager
    def writing(self, name: str) -> Iterator[AnyCollection]:
        """The collection `name` (created if missing) for one writer at a time; readers reopen afterwards."""
        with self._writer(name):
            try:
                collection = self._collection(name)
            except CollectionNotFoundError:
                self.create(name)
                collection = self._collection(name)
            try:
                yield collection
            finally:
                self._forget(name)

    @contextmanager
    def _writer(self, name: str, wait: bool = True) -> Iterator[None]:
        """Hold `name`'s writer lock; without `wait`, CollectionBusyError when another writer has it."""
        with self._lock:
            lock = self._writers.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=wait):
            raise CollectionBusyError(name)
        try:
            yield
        finally:
            lock.release()

    def _forget(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)
