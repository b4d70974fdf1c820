"""A named collection: one directory holding the chunk store, the indexes derived from it and a manifest.

    <root>/<name>/chunks.db       SQLite (WAL): documents, chunks, vectors; the source of truth
                  vectors.index   ANN or flat vector index over chunk ids     (derived)
                  bm25            keyword index over chunk texts              (derived)
                  manifest.json   identity, counts, generation and checksums of the derived files
                  write.lock      held by the one process writing at a time

Readers never trust a derived file blindly: if the manifest lags the chunk store or a checksum differs,
the indexes are rebuilt from the chunk store (and saved back when no writer holds the lock).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ragjet.index import BM25Index, IndexParams, VectorIndex, build_index, load_index
from ragjet.ingest.document import Chunk, Document
from ragjet.store.chunk_store import ChunkStore
from ragjet.store.errors import CollectionError, CollectionNotFoundError, EmbedderMismatchError
from ragjet.store.manifest import FORMAT_VERSION, MANIFEST, Manifest, checksum, read_manifest, write_manifest
from ragjet.store.types import CollectionInfo, DocumentInfo

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHUNKS_DB, VECTORS, BM25, LOCK = "chunks.db", "vectors.index", "bm25", "write.lock"
REBUILD_GROWTH = 2.0  # an ANN index is retrained once the collection has grown this much since it was built


@contextmanager
def staged_folder(root: Path, name: str) -> Iterator[Path]:
    """A folder to build collection `name` in, renamed into place when the block ends without an error: a
    collection appears whole or not at all. CollectionError when `name` exists."""
    folder = collection_dir(root, name)
    if folder.exists():
        raise CollectionError(f"collection {name!r} already exists")
    staging = root / f".{name}.creating"
    shutil.rmtree(staging, ignore_errors=True)  # left by a create that crashed
    staging.mkdir(parents=True)
    yield staging
    staging.rename(folder)


def collection_dir(root: Path, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise CollectionError(f"invalid collection name {name!r}: use 1-64 letters, digits, '_' or '-'")
    return root / name


def check_embedder(name: str, built_with: tuple[str, int], given: tuple[str, int]) -> None:
    """EmbedderMismatchError unless `given` (embedder id, dimensions) is what collection `name` was built with."""
    if given != built_with:
        raise EmbedderMismatchError(
            f"collection {name!r} was built with embedder {built_with[0]} ({built_with[1]}-d), "
            f"not {given[0]} ({given[1]}-d): vectors of different embedders cannot be compared; "
            "ingest into a new collection"
        )


class Collection:
    """Open with `Collection.open` or `Collection.create`; write only inside `with collection.writer():`."""

    def __init__(self, folder: Path, store: ChunkStore, device: str = "auto"):
        """``device``: where the vector index searches (index.device), the opener's choice, not stored."""
        self.folder, self.name, self.store, self.device = folder, folder.name, store, device
        meta = store.meta()
        self.embedder_id, self.dim = str(meta["embedder_id"]), int(meta["dim"])  # type: ignore[call-overload]
        self.index_params = IndexParams.from_dict(meta["index"])  # type: ignore[arg-type]
        self.created_at = float(meta["created_at"])  # type: ignore[arg-type]
        self._index: VectorIndex | None = None
        self._bm25: BM25Index | None = None
        self._built_size = 0
        self._load_lock = threading.Lock()
        self._lock_file: int | None = None

    @classmethod
    def create(
        cls, root: Path, name: str, embedder_id: str, dim: int, index_params: IndexParams, device: str = "auto"
    ) -> Collection:
        with staged_folder(root, name) as staging:
            meta = {"embedder_id": embedder_id, "dim": dim, "index": index_params.to_dict(),
                    "created_at": time.time(), "format_version": FORMAT_VERSION}  # fmt: skip
            ChunkStore.create(staging / CHUNKS_DB, meta).close()
            collection = cls(staging, ChunkStore(staging / CHUNKS_DB), device)
            collection._index, collection._bm25 = build_index(index_params, dim, device), BM25Index()
            collection._save_derived()
            collection.store.close()
        return cls.open(root, name, device)

    @classmethod
    def open(cls, root: Path, name: str, device: str = "auto") -> Collection:
        folder = collection_dir(root, name)
        if not (folder / CHUNKS_DB).is_file():
            raise CollectionNotFoundError(name)
        collection = cls(folder, ChunkStore(folder / CHUNKS_DB), device)
        read_manifest(folder)  # a damaged manifest is refused up front, with the way to repair it
        return collection

    @staticmethod
    def version_of(root: Path, name: str) -> str:
        """Changes whenever a writer saves: cheap enough to check on every request."""
        folder = collection_dir(root, name)
        try:
            stat = (folder / MANIFEST).stat()
        except FileNotFoundError:
            if not (folder / CHUNKS_DB).is_file():
                raise CollectionNotFoundError(name) from None
            return "no-manifest"
        return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"

    @classmethod
    def repair(cls, root: Path, name: str, device: str = "auto") -> CollectionInfo:
        """Rebuild the manifest and every derived file from the chunk store."""
        folder = collection_dir(root, name)
        if not (folder / CHUNKS_DB).is_file():
            raise CollectionNotFoundError(name)
        collection = cls(folder, ChunkStore(folder / CHUNKS_DB), device)
        with collection._write_lock():
            collection._rebuild()
            collection._save_derived()
        return collection.info()

    def info(self) -> CollectionInfo:
        num_documents, num_chunks = self.store.counts()
        updated_at = float(self.store.meta().get("updated_at", self.created_at))  # type: ignore[arg-type]
        return CollectionInfo(self.name, self.embedder_id, self.dim, self.index_params.kind, num_documents,
                              num_chunks, self.created_at, updated_at, FORMAT_VERSION)  # fmt: skip

    def documents(self) -> list[DocumentInfo]:
        return self.store.documents()

    def content_hash(self, source: str) -> str | None:
        """The stored hash of `source`'s bytes, None when the collection does not hold it (what ingestion skips on)."""
        return self.store.content_hash(source)

    @property
    def shards(self) -> dict[int, Collection]:
        """A plain collection is its own single shard, so retrieval searches every collection one way."""
        return {0: self}

    @property
    def problems(self) -> dict[int, str]:
        """Shards that cannot be searched, and why: none here (store/sharded.py can have some)."""
        return {}

    def check_embedder(self, embedder_id: str, dim: int) -> None:
        check_embedder(self.name, (self.embedder_id, self.dim), (embedder_id, dim))

    @property
    def index(self) -> VectorIndex:
        self._ensure_loaded()
        assert self._index is not None
        return self._index

    @property
    def bm25(self) -> BM25Index:
        self._ensure_loaded()
        assert self._bm25 is not None
        return self._bm25

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Collection]:
        """One writer per collection across processes; derived files and manifest are saved on the way out."""
        with self._write_lock():
            self._ensure_loaded()
            try:
                yield self
            finally:
                self._save_derived()

    def put_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self._require_writer()
        self._ensure_loaded()
        removed, added = self.store.put_document(doc, chunks, vectors)
        self._apply(removed, added, vectors, [c.text for c in chunks])

    def delete_document(self, source: str) -> bool:
        """Remove one document; returns False if the collection does not hold it."""
        if self._lock_file is None:
            with self.writer():
                return self.delete_document(source)
        removed = self.store.delete_document(source)
        if removed is None:
            return False
        self._apply(removed, np.empty(0, dtype=np.int64), np.empty((0, self.dim), np.float32), [])
        return True

    def _apply(self, removed: np.ndarray, added: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        assert self._index is not None and self._bm25 is not None
        if len(removed):
            self._index.remove(removed)
            self._bm25.remove(removed)
        if len(added):
            self._index.add(added, np.asarray(vectors, dtype=np.float32))
            self._bm25.add(added, texts)

    def _require_writer(self) -> None:
        if self._lock_file is None:
            raise RuntimeError("write to a collection inside `with collection.writer():`")

    @contextmanager
    def _write_lock(self, blocking: bool = True) -> Iterator[bool]:
        """An advisory flock on write.lock; yields whether it was taken (always True when blocking)."""
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            self._lock_file = fd
            try:
                yield True
            finally:
                self._lock_file = None
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- derived files -----------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self._index is None:
                self._load_or_rebuild()

    def _load_or_rebuild(self) -> None:
        manifest = read_manifest(self.folder)
        problem = self._derived_problem(manifest)
        if problem is None:
            try:
                self._index, self._bm25 = (
                    load_index(self.folder / VECTORS, self.device),
                    BM25Index.load(self.folder / BM25),
                )
                self._built_size = len(self._index)
                return
            except (OSError, ValueError) as exc:
                problem = f"cannot be loaded ({exc})"
        log.warning("collection %r: derived indexes %s; rebuilding them from the chunk store", self.name, problem)
        self._rebuild()
        if self._lock_file is None:
            with self._write_lock(blocking=False) as acquired:
                if acquired:  # no writer is busy: save the repair so the next open is fast
                    self._save_derived()

    def _derived_problem(self, manifest: Manifest) -> str | None:
        if manifest.generation != self.store.generation():
            return f"reflect generation {manifest.generation}, the chunk store is at {self.store.generation()}"
        for name in (VECTORS, BM25):
            path = self.folder / name
            if not path.exists():
                return f"are missing {name}"
            if manifest.checksums.get(name) != checksum(path):
                return f"have a checksum mismatch in {name}"
        return None

    def _rebuild(self) -> None:
        index, bm25 = build_index(self.index_params, self.dim, self.device), BM25Index()
        ids, vectors, texts = [], [], []
        for batch_ids, batch_vectors, batch_texts in self.store.iter_chunks():
            ids.append(batch_ids)
            vectors.append(batch_vectors)
            texts += batch_texts
        if ids:
            index.add(np.concatenate(ids), np.concatenate(vectors))
            bm25.add(np.concatenate(ids), texts)
        self._index, self._bm25, self._built_size = index, bm25, len(index)

    def _save_derived(self) -> None:
        assert self._index is not None and self._bm25 is not None
        if self.index_params.kind != "flat" and len(self._index) > REBUILD_GROWTH * max(self._built_size, 1):
            self._rebuild()  # retrain the ANN on the data it now holds, not on the first few documents
        generation = self.store.generation()
        self._index.save(self.folder / VECTORS)
        self._bm25.save(self.folder / BM25)
        info = self.info()
        write_manifest(self.folder, Manifest(
            FORMAT_VERSION, self.name, self.embedder_id, self.dim, self.index_params.to_dict(), generation,
            info.num_documents, info.num_chunks, self.created_at, info.updated_at,
            {name: checksum(self.folder / name) for name in (VECTORS, BM25)},
        ))  # fmt: skip
