"""Host-memory cache of retrieved chunks' K/V, for reuse at any position of a later prompt ("blend" mode).

An entry is one chunk's keys and values for every layer, as computed at the position the chunk first had
(the model runner rotates the keys to wherever the chunk lands next: one rotation, one rounding). Its key is
the model's id and a digest of the chunk's token ids: an edited chunk has other tokens and a switched model
another id, so stale K/V can never be served; `invalidate` drops a deleted document's chunks early, by tag.

Eviction is popularity-aware (LFU with dynamic aging): an entry's priority is the cache's age plus its number
of uses, and the age rises to each evicted priority. Chunks that keep being retrieved stay; a burst of
one-off chunks ages out instead of flushing them, and a once-popular chunk cannot squat forever.
No torch import: entries hold the tensors the model runner hands in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def chunk_key(model_id: str, token_ids: list[int]) -> tuple[str, str]:
    digest = hashlib.blake2b(b"".join(t.to_bytes(4, "little") for t in token_ids), digest_size=16).hexdigest()
    return model_id, digest


@dataclass(eq=False, slots=True)
class ChunkKV:
    keys: Any  # (layers, n, Hkv, D) rotated for positions start..start+n-1, host memory
    values: Any  # (layers, n, Hkv, D)
    start: int
    num_bytes: int
    tags: set[str] = field(default_factory=set)
    priority: float = 0.0
    num_uses: int = 0


@dataclass(slots=True)
class ChunkCacheStats:
    num_entries: int = 0
    num_bytes: int = 0
    budget_bytes: int = 0
    num_lookups: int = 0  # in chunks
    num_hits: int = 0
    num_evictions: int = 0
    num_invalidated: int = 0

    @property
    def hit_rate(self) -> float:
        return self.num_hits / self.num_lookups if self.num_lookups else 0.0


class ChunkKVCache:
    def __init__(self, model_id: str, budget_bytes: int):
        if budget_bytes < 0:
            raise ValueError(f"the chunk KV budget must be >= 0 bytes, got {budget_bytes}")
        self.model_id = model_id
        self.entries: dict[tuple[str, str], ChunkKV] = {}
        self.by_tag: dict[str, set[tuple[str, str]]] = {}
        self.age = 0.0
        self.stats = ChunkCacheStats(budget_bytes=budget_bytes)

    def get(self, token_ids: list[int]) -> ChunkKV | None:
        """The chunk's entry (one more use) or None."""
        self.stats.num_lookups += 1
        entry = self.entries.get(chunk_key(self.model_id, token_ids))
        if entry is not None:
            self.stats.num_hits += 1
            entry.num_uses += 1
            entry.priority = self.age + entry.num_uses
        return entry

    def contains(self, token_ids: list[int]) -> bool:
        return chunk_key(self.model_id, token_ids) in self.entries

    def put(self, token_ids: list[int], tag: str, keys: Any, values: Any, start: int, num_bytes: int) -> bool:
        """Store a chunk's K/V, evicting the least popular entries to fit; False if it can never fit."""
        key = chunk_key(self.model_id, token_ids)
        if key in self.entries:
            self._tag(key, self.entries[key], tag)
            return True
        if num_bytes > self.stats.budget_bytes:
            return False
        while self.stats.num_bytes + num_bytes > self.stats.budget_bytes:
            self._evict_one()
        entry = ChunkKV(keys, values, start, num_bytes, num_uses=1, priority=self.age + 1)
        self.entries[key] = entry
        self._tag(key, entry, tag)
        self.stats.num_bytes += num_bytes
        self.stats.num_entries = len(self.entries)
        return True

    def invalidate(self, tags: list[str]) -> int:
        """Drop every entry stored under any of ``tags`` (a deleted or re-ingested document's chunks)."""
        dropped = 0
        for tag in tags:
            for key in self.by_tag.pop(tag, set()):
                if key in self.entries:
                    self._drop(key)
                    dropped += 1
        self.stats.num_invalidated += dropped
        return dropped

    def clear(self) -> None:
        self.invalidate(list(self.by_tag))

    def _tag(self, key: tuple[str, str], entry: ChunkKV, tag: str) -> None:
        entry.tags.add(tag)
        self.by_tag.setdefault(tag, set()).add(key)

    def _evict_one(self) -> None:
        key = min(self.entries, key=lambda k: self.entries[k].priority)
        self.age = self.entries[key].priority
        self._drop(key)
        self.stats.num_evictions += 1

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self.entries.pop(key)
        for tag in entry.tags:
            keys = self.by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_tag[tag]
        self.stats.num_bytes -= entry.num_bytes
        self.stats.num_entries = len(self.entries)
