"""A collection's manifest: what built it, how big it is, and checksums of the files derived from the chunk store.

The manifest is rewritten atomically after the derived files are saved, and names the chunk-store
generation they reflect. A manifest that lags the chunk store (a writer died before saving) or a file
whose checksum differs (truncated, edited) means "rebuild from the chunk store", never "serve it".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragjet.atomic import atomic_write
from ragjet.store.errors import CollectionError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    name: str
    embedder_id: str
    dim: int
    index: dict[str, Any]  # the IndexParams layout the vector index was built with (index/params.py)
    generation: int  # chunk-store generation the derived files reflect
    num_documents: int
    num_chunks: int
    created_at: float
    updated_at: float
    checksums: dict[str, str] = field(default_factory=dict)  # derived file name -> sha256


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**data)
    except FileNotFoundError as exc:
        raise CollectionError(f"{path} is missing; run `ragjet collections repair {folder.name}`") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise CollectionError(
            f"{path} is damaged ({exc}); the chunk store is intact: run `ragjet collections repair {folder.name}`"
        ) from exc
    if manifest.format_version != FORMAT_VERSION:
        raise CollectionError(
            f"{path}: format version {manifest.format_version}, this ragjet reads version {FORMAT_VERSION}"
        )
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    with atomic_write(folder / MANIFEST) as f:
        f.write(json.dumps(asdict(manifest), indent=2).encode())


def checksum(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names included), so any damaged byte shows."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode())
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
