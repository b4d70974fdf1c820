"""A collection split into shards by a stable hash of each document's source; each shard is a whole collection.

    <root>/<name>/shards.json   what the collection is: num_shards, embedder, dimensions, index parameters
                  shard-0/      a complete collection folder (chunks.db, vectors.index, bm25, manifest.json)
                  shard-1/ ...

A shard is a whole collection so that it can be opened read-only on its own, by another process (a Ray
retrieval replica), with everything that keeps one collection safe: WAL snapshots, checksummed derived files
rebuilt when damaged, one writer at a time. Chunk ids are collection-wide: before a shard stores a document,
its id sequence is moved past every other shard's, so ids never collide, merged candidate lists need no shard
prefix, and a collection ingested in the same order numbers its chunks the same sharded or not (equal scores
break by id, so that is part of ranking both the same).

A shard that is missing or unreadable leaves the others searchable: `problems` names it and retrieval says the
result is degraded. Writes are refused until it is repaired or restored, so no document is routed around it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragjet.atomic import atomic_write
from ragjet.index import IndexParams
from ragjet.ingest.document import Chunk, Document
from ragjet.store.collection import CHUNKS_DB, Collection, check_embedder, collection_dir, staged_folder
from ragjet.store.errors import CollectionError, CollectionNotFoundError
from ragjet.store.manifest import FORMAT_VERSION
from ragjet.store.types import CollectionInfo, DocumentInfo

LAYOUT = "shards.json"


def shard_name(shard: int) -> str:
    return f"shard-{shard}"


def shard_of(source: str, num_shards: int) -> int:
    """The shard holding document `source`: blake2b, not hash(), so every process and Python version agrees."""
    digest = hashlib.blake2b(source.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """shards.json: written once at creation; the number of shards never changes afterwards."""

    format_version: int
    num_shards: int
    embedder_id: str
    dim: int
    index: dict[str, Any]  # IndexParams layout (index/params.py), num_shards included
    created_at: float

    @classmethod
    def read(cls, folder: Path) -> ShardLayout:
        try:
            layout = cls(**json.loads((folder / LAYOUT).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise CollectionError(f"{folder / LAYOUT} is damaged or unreadable ({exc}): restore it from a backup; "
                                  "the shard folders beside it are intact") from exc  # fmt: skip
        if layout.format_version != FORMAT_VERSION:
            raise CollectionError(f"{folder / LAYOUT}: format version {layout.format_version}, "
                                  f"this ragjet reads version {FORMAT_VERSION}")  # fmt: skip
        return layout

    def write(self, folder: Path) -> None:
        with atomic_write(folder / LAYOUT) as f:
            f.write(json.dumps(asdict(self), indent=2).encode())


class ShardedCollection:
    """A collection of `num_shards` shards; the same surface as Collection for the registry, ingestion and retrieval."""

    def __init__(self, folder: Path, layout: ShardLayout, device: str = "auto"):
        self.folder, self.name, self.device, self.num_shards = folder, folder.name, device, layout.num_shards
        self.embedder_id, self.dim, self.created_at = layout.embedder_id, layout.dim, layout.created_at
        self.index_params = IndexParams.from_dict(layout.index)
        self.shards: dict[int, Collection] = {}  # the readable shards, by number
        self.problems: dict[int, str] = {}  # the others, and why they cannot be read
        for shard in range(self.num_shards):
            try:
                self.shards[shard] = Collection.open(folder, shard_name(shard), device)
            except (CollectionError, ValueError) as exc:
                self.problems[shard] = f"{shard_name(shard)} of {self.name!r} cannot be read ({exc})"

    @classmethod
    def create(
        cls, root: Path, name: str, embedder_id: str, dim: int, index_params: IndexParams, device: str = "auto"
    ) -> ShardedCollection:
        with staged_folder(root, name) as staging:
            for shard in range(index_params.num_shards):
                Collection.create(staging, shard_name(shard), embedder_id, dim, index_params, device).store.close()
            ShardLayout(FORMAT_VERSION, index_params.num_shards, embedder_id, dim, index_params.to_dict(),
                        time.time()).write(staging)  # fmt: skip
        return cls.open(root, name, device)

    @classmethod
    def open(cls, root: Path, name: str, device: str = "auto") -> ShardedCollection:
        folder = collection_dir(root, name)
        if not (folder / LAYOUT).is_file():
            raise CollectionNotFoundError(name)
        return cls(folder, ShardLayout.read(folder), device)

    @staticmethod
    def version_of(folder: Path) -> str:
        """Changes whenever a writer saves any shard: each shard's manifest version, joined."""
        num_shards = ShardLayout.read(folder).num_shards
        return "/".join(_shard_version(folder, shard) for shard in range(num_shards))

    @classmethod
    def repair(cls, root: Path, name: str, device: str = "auto") -> CollectionInfo:
        """Rebuild every shard's manifest and derived files from its chunk store; a lost chunk store is refused."""
        folder = collection_dir(root, name)
        for shard in range(cls.open(root, name, device).num_shards):
            try:
                Collection.repair(folder, shard_name(shard), device)
            except CollectionNotFoundError:
                raise CollectionError(f"{shard_name(shard)} of {name!r} has lost its chunk store, the source of truth: "
                                      "restore that folder from a backup") from None  # fmt: skip
        return cls.open(root, name, device).info()

    def info(self) -> CollectionInfo:
        infos = [shard.info() for shard in self.shards.values()]
        return CollectionInfo(self.name, self.embedder_id, self.dim, self.index_params.kind,
                              sum(i.num_documents for i in infos), sum(i.num_chunks for i in infos), self.created_at,
                              max((i.updated_at for i in infos), default=self.created_at), FORMAT_VERSION)  # fmt: skip

    def documents(self) -> list[DocumentInfo]:
        return sorted((d for shard in self.shards.values() for d in shard.documents()), key=lambda d: d.source)

    def check_embedder(self, embedder_id: str, dim: int) -> None:
        check_embedder(self.name, (self.embedder_id, self.dim), (embedder_id, dim))

    def content_hash(self, source: str) -> str | None:
        return self._shard_of(source).content_hash(source)

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[ShardedCollection]:
        """Every shard's writer lock, taken in shard order (so two writers cannot deadlock)."""
        self._require_every_shard()
        with ExitStack() as stack:
            for shard in self.shards.values():
                stack.enter_context(shard.writer())
            yield self

    def put_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        shard = self._shard_of(doc.source)
        shard.store.continue_ids_after(max(s.store.last_chunk_id() for s in self.shards.values()))
        shard.put_document(doc, chunks, vectors)

    def delete_document(self, source: str) -> bool:
        """Remove one document from its shard; returns False if the collection does not hold it."""
        self._require_every_shard()
        return self._shard_of(source).delete_document(source)

    def _shard_of(self, source: str) -> Collection:
        shard = shard_of(source, self.num_shards)
        if shard in self.problems:
            raise CollectionError(f"{self.problems[shard]}: repair or restore it first")
        return self.shards[shard]

    def _require_every_shard(self) -> None:
        if self.problems:
            raise CollectionError(f"collection {self.name!r} is not written while a shard is unreadable: "
                                  f"{'; '.join(self.problems.values())}")  # fmt: skip


AnyCollection = Collection | ShardedCollection


def is_collection(folder: Path) -> bool:
    return (folder / CHUNKS_DB).is_file() or (folder / LAYOUT).is_file()


def open_collection(root: Path, name: str, device: str = "auto") -> AnyCollection:
    """`name` as it was created: sharded or not (CollectionNotFoundError when it is neither)."""
    if (collection_dir(root, name) / LAYOUT).is_file():
        return ShardedCollection.open(root, name, device)
    return Collection.open(root, name, device)


def create_collection(
    root: Path, name: str, embedder_id: str, dim: int, index_params: IndexParams, device: str = "auto"
) -> AnyCollection:
    """A plain collection for one shard (the layout of every collection before shards), a sharded one otherwise."""
    kind = Collection if index_params.num_shards == 1 else ShardedCollection
    return kind.create(root, name, embedder_id, dim, index_params, device)


def collection_version(root: Path, name: str) -> str:
    """Changes whenever a writer saves `name`; cheap enough to check on every request."""
    folder = collection_dir(root, name)
    return ShardedCollection.version_of(folder) if (folder / LAYOUT).is_file() else Collection.version_of(root, name)


def repair_collection(root: Path, name: str, device: str = "auto") -> CollectionInfo:
    kind = ShardedCollection if (collection_dir(root, name) / LAYOUT).is_file() else Collection
    return kind.repair(root, name, device)


def _shard_version(folder: Path, shard: int) -> str:
    try:
        return Collection.version_of(folder, shard_name(shard))
    except CollectionNotFoundError:
        return "missing"
