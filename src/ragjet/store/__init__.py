"""Collections: a SQLite chunk store with vectors and derived indexes, one directory per collection."""

from ragjet.store.errors import CollectionError, CollectionNotFoundError, EmbedderMismatchError
from ragjet.store.types import CollectionInfo, DocumentInfo

__all__ = ["CollectionError", "CollectionInfo", "CollectionNotFoundError", "DocumentInfo", "EmbedderMismatchError"]
