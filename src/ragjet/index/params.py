"""What a built vector index is, as stored with its collection: a small versioned plain dict, not settings.

A collection outlives the settings that created it, so it keeps only what its index was built with (kind,
IVF/PQ/HNSW shape, search breadth) and reads it back through `IndexParams.from_dict`, which migrates every
earlier layout. Where the index runs (`index.device`) is not stored: it is the choice of whoever opens the
collection, so a collection built on a laptop opens on a GPU server's device and vice versa.

Layouts:
- 1 (no "version" key): the `index` settings section dumped whole, `device` included.
- 2: {"version": 2, kind, nlist, nprobe, pq_m, hnsw_m, ef_search, refine_factor}.
- 3: adds num_shards (earlier layouts are one shard). A ragjet that reads only up to 2 refuses a sharded
  collection rather than open one of its shards as if it were the whole collection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragjet.config import IndexSettings

PARAMS_VERSION = 3
INDEX_KINDS = ("flat", "ivf_flat", "ivf_pq", "hnsw")
MAX_SHARDS = 64


@dataclass(frozen=True, slots=True)
class IndexParams:
    kind: str = "flat"
    nlist: int = 0  # IVF lists; 0 picks ~4*sqrt(N) at build time
    nprobe: int = 16
    pq_m: int = 48
    hnsw_m: int = 32
    ef_search: int = 64
    refine_factor: int = 4
    num_shards: int = 1  # chunks spread over this many shard folders by a hash of their document (store/sharded.py)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; choose from {', '.join(INDEX_KINDS)}")
        if not 1 <= self.num_shards <= MAX_SHARDS:
            raise ValueError(f"num_shards must be between 1 and {MAX_SHARDS}, got {self.num_shards}")

    @classmethod
    def from_settings(cls, settings: IndexSettings) -> IndexParams:
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return {"version": PARAMS_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        """Params stored by this or any earlier ragjet; ValueError for a later layout or a malformed one."""
        version = data.get("version", 1)
        if not isinstance(version, int) or version > PARAMS_VERSION:
            raise ValueError(f"index parameters of layout {version!r}: written by a newer ragjet "
                             f"(this one reads layouts up to {PARAMS_VERSION})")  # fmt: skip
        names = {f.name for f in dataclasses.fields(cls)}
        # Layout 1 carried `device` (now the opener's choice); fields added since take their defaults.
        return cls(**{key: value for key, value in data.items() if key in names})
