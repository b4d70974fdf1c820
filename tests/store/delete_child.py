"""Run by test_store_delete_crash in a subprocess: delete documents or a collection, SIGKILL-ing itself at a
chosen point.

Usage: python delete_child.py ROOT KILL_POINT SOURCE... where KILL_POINT is one of
  inside:N    inside the N-th document delete's transaction, before it commits
  commit:N    right after the N-th document delete commits, before the indexes are saved
  save:N      half-way through writing the vector index file after the N-th delete
  manifest:N  just before the manifest of the N-th delete is renamed into place
  rename      (collection delete) just before the collection folder is renamed away
  renamed     (collection delete) after the rename, before any file is removed
  rmtree      (collection delete) after the chunk store file was removed, the rest not yet
Document points delete each SOURCE in turn, one writer each (as the REST API does); collection points
delete the collection "facts".
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ragjet import atomic
from ragjet.index import FlatIndex
from ragjet.store import Collection, catalog, chunk_store, delete_collection


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def on_nth_call(owner: object, name: str, n: int, before: bool = False) -> None:
    """Replace owner.name so that its n-th call dies (before running when `before`, else after)."""
    original: Callable[..., object] = getattr(owner, name)
    calls = [0]

    def wrapped(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if before and calls[0] == n:
            die()
        result = original(*args, **kwargs)
        if not before and calls[0] == n:
            die()
        return result

    setattr(owner, name, wrapped)


def arm(point: str) -> None:
    kind, _, count = point.partition(":")
    n = int(count or 0)
    if kind == "inside":
        on_nth_call(chunk_store.ChunkStore, "_delete", n)  # rows gone inside the open transaction
    elif kind == "commit":
        on_nth_call(chunk_store.ChunkStore, "delete_document", n)
    elif kind == "save":
        save = FlatIndex.save
        calls = [0]

        def half_written(self, path: Path) -> None:  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == n:
                path.write_bytes(b"PK\x03\x04 half of an index")
                die()
            save(self, path)

        FlatIndex.save = half_written  # type: ignore[method-assign]
    elif kind == "manifest":
        replace, calls = os.replace, [0]

        def replace_unless_manifest(src, dst):  # type: ignore[no-untyped-def]
            if str(dst).endswith("manifest.json"):
                calls[0] += 1
                if calls[0] == n:
                    die()
            replace(src, dst)

        atomic.os.replace = replace_unless_manifest  # type: ignore[attr-defined]
    elif kind == "rename":
        on_nth_call(Path, "rename", 1, before=True)
    elif kind == "renamed":
        catalog.shutil.rmtree = lambda *args, **kwargs: die()  # type: ignore[attr-defined]
    elif kind == "rmtree":

        def remove_store_then_die(path: Path, *args: object, **kwargs: object) -> None:
            (Path(path) / "chunks.db").unlink()
            die()

        catalog.shutil.rmtree = remove_store_then_die  # type: ignore[attr-defined]
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def main() -> None:
    root, point, sources = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    arm(point)
    if point.startswith(("rename", "renamed", "rmtree")):
        delete_collection(root, "facts")
    for source in sources:
        Collection.open(root, "facts").delete_document(source)


if __name__ == "__main__":
    main()
