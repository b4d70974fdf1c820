"""The collections under a root folder: list them, delete one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ragjet.store.chunk_store import ChunkStore
from ragjet.store.collection import CHUNKS_DB, Collection, collection_dir
from ragjet.store.errors import CollectionError, CollectionNotFoundError
from ragjet.store.types import CollectionInfo

log = logging.getLogger(__name__)


def list_collections(root: Path) -> list[CollectionInfo]:
    """Every readable collection, by name; a damaged one is logged and left out rather than failing the list."""
    infos = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not (folder / CHUNKS_DB).is_file():
            continue
        try:
            infos.append(Collection(folder, ChunkStore(folder / CHUNKS_DB)).info())
        except CollectionError as exc:
            log.warning("skipping collection %r: %s", folder.name, exc)
    return infos


def delete_collection(root: Path, name: str) -> None:
    """Renamed away first (atomic: readers see it whole or gone), then removed from disk."""
    folder = collection_dir(root, name)
    if not (folder / CHUNKS_DB).is_file():
        raise CollectionNotFoundError(name)
    trash = root / f".{name}.deleting.{os.getpid()}"
    folder.rename(trash)
    shutil.rmtree(trash)
