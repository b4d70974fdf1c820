"""The collections under a root folder: list them, delete one, sweep what a killed delete left behind."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from ragjet.store.chunk_store import ChunkStore
from ragjet.store.collection import CHUNKS_DB, Collection, collection_dir
from ragjet.store.errors import CollectionError, CollectionNotFoundError
from ragjet.store.sharded import ShardedCollection, is_collection
from ragjet.store.types import CollectionInfo

log = logging.getLogger(__name__)

TRASH = re.compile(r"^\.(?P<name>[A-Za-z0-9_-]{1,64})\.deleting\.(?P<pid>\d+)$")


def list_collections(root: Path) -> list[CollectionInfo]:
    """Every readable collection, by name; a damaged one is logged and left out rather than failing the list."""
    sweep_trash(root)
    infos = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not is_collection(folder):
            continue
        try:
            infos.append(_info(folder))
        except CollectionError as exc:
            log.warning("skipping collection %r: %s", folder.name, exc)
    return infos


def delete_collection(root: Path, name: str) -> None:
    """Renamed away first (atomic: readers see it whole or gone), then removed from disk."""
    folder = collection_dir(root, name)
    if not is_collection(folder):
        raise CollectionNotFoundError(name)
    trash = root / f".{name}.deleting.{os.getpid()}"
    folder.rename(trash)
    shutil.rmtree(trash)
    sweep_trash(root)


def _info(folder: Path) -> CollectionInfo:
    """Read without the manifest check of `open`: a collection whose manifest needs repair is still listed."""
    if (folder / CHUNKS_DB).is_file():
        return Collection(folder, ChunkStore(folder / CHUNKS_DB)).info()
    return ShardedCollection.open(folder.parent, folder.name).info()


def sweep_trash(root: Path) -> None:
    """Remove the renamed-away folders of deletes whose process died before it had removed them.

    A folder whose deleting process still runs is left alone: that process is removing it right now.
    """
    for folder in root.iterdir() if root.is_dir() else []:
        match = TRASH.fullmatch(folder.name)
        if match is not None and not _is_running(int(match["pid"])):
            log.warning("removing %s, left by a collection delete that did not finish", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def _is_running(pid: int) -> bool:
    """Whether process `pid` exists (one of another user counts too); a reused pid only delays the sweep."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
