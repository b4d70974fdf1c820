"""The pipeline's collection side: each tenant's registry, and writes on a writer pool of their own.

`RagPipeline` inherits it; transports call these methods on the pipeline. Writes never run on the threads that
retrieval and prompt assembly use, and a read-only server (serve.read_only) refuses them before anything is stored.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ragjet.config import Settings
from ragjet.embed.embedder import Embedder
from ragjet.ingest.chunker import Chunker
from ragjet.rag.collections import CollectionRegistry
from ragjet.rag.ingestion import IngestReport, ingest_paths
from ragjet.rag.tenants import DEFAULT_TENANT, validate_tenant
from ragjet.retrieve.cross_encoder import CrossEncoder
from ragjet.store import CollectionInfo, DocumentInfo

T = TypeVar("T")


class CollectionAdmin:
    """Collections of every tenant: list, create, delete, ingest. Needs the pipeline's settings and embedder."""

    settings: Settings
    _registries: dict[str, CollectionRegistry]  # one per tenant, each with its own folder
    _embedder: Embedder | None
    _cross_encoder: CrossEncoder | None
    _writes: ThreadPoolExecutor | None  # collection writes: see _write

    def collections(self, tenant: str = DEFAULT_TENANT) -> CollectionRegistry:
        """The tenant's collections; a tenant never sees another's (separate folders, separate registries)."""
        registry = self._registries.get(tenant)
        if registry is None:
            root = None if tenant == DEFAULT_TENANT else self.settings.tenants_dir / validate_tenant(tenant)
            registry = self._registries.setdefault(tenant, CollectionRegistry(self.settings, root))
            registry.embedder, registry.cross_encoder = self._embedder, self._cross_encoder
        return registry

    async def list_collections(self, tenant: str = DEFAULT_TENANT) -> list[CollectionInfo]:
        return await asyncio.to_thread(self.collections(tenant).infos)  # reads every collection's store

    async def create_collection(self, name: str, tenant: str = DEFAULT_TENANT) -> CollectionInfo:
        return await self._write(self.collections(tenant).create, name)

    async def delete_collection(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        """CollectionBusyError while an ingest writes `name`: a delete never waits behind one."""
        await self._write(self.collections(tenant).delete, name)

    async def documents(self, collection: str, tenant: str = DEFAULT_TENANT) -> list[DocumentInfo]:
        return await asyncio.to_thread(self.collections(tenant).documents, collection)

    async def delete_document(self, collection: str, source: str, tenant: str = DEFAULT_TENANT) -> bool:
        """False when the collection holds no such document; CollectionBusyError while an ingest writes it."""
        return await self._write(self.collections(tenant).delete_document, collection, source)

    async def ingest(
        self, collection: str, paths: list[Path], progress: bool = False, tenant: str = DEFAULT_TENANT
    ) -> IngestReport:
        """Load, chunk, embed and store `paths` in a writer thread; creates the collection if missing."""
        embedder = require(self._embedder)
        chunk = self.settings.chunk
        chunker = Chunker(embedder.tokenizer, max_tokens=chunk.max_tokens, overlap_tokens=chunk.overlap_tokens)
        registry = self.collections(tenant)

        def run() -> IngestReport:
            with registry.writing(collection) as store:
                return ingest_paths(store, paths, embedder, chunker, progress=progress)

        return await self._write(run)

    def check_writable(self) -> None:
        """PermissionError on a server whose collections another process publishes (serve.read_only)."""
        if self.settings.serve.read_only:
            raise PermissionError("this server is read-only (serve.read_only): its collections are published by "
                                  "another process, e.g. the ingest Job")  # fmt: skip

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        """Run a collection write on the writer pool: a long ingest (or one waiting for its collection's
        writer lock) never holds a thread that retrieval and prompt assembly need. PermissionError on a
        read-only server (serve.read_only)."""
        self.check_writable()
        if self._writes is None:
            self._writes = ThreadPoolExecutor(thread_name_prefix="ragjet-writer")
        return await asyncio.get_running_loop().run_in_executor(self._writes, functools.partial(fn, *args))


def require(component: T | None) -> T:
    if component is None:
        raise RuntimeError("the RAG pipeline is not started: await pipeline.start() first")
    return component
