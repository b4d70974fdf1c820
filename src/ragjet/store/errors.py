"""Errors about collections, phrased so the user knows which collection and what to do."""

from __future__ import annotations


class CollectionError(Exception):
    """A collection that cannot be used as asked (bad name, already exists, damaged files)."""


class CollectionNotFoundError(CollectionError):
    def __init__(self, name: str, available: list[str] | None = None):
        hint = ""
        if available is not None:
            hint = f" (available: {', '.join(available)})" if available else "; create one with `ragjet ingest`"
        super().__init__(f"no collection named {name!r}{hint}")
        self.name = name


class EmbedderMismatchError(CollectionError):
    """The collection's vectors came from another embedder; mixing them would give meaningless scores."""


class CollectionBusyError(CollectionError):
    """Another request is writing the collection (an ingest holds its writer); retry when it finishes."""

    def __init__(self, name: str, retry_after_s: float = 5.0):
        super().__init__(
            f"collection {name!r} is being written by another request (an ingest is running); retry when it finishes"
        )
        self.name, self.retry_after_s = name, retry_after_s
