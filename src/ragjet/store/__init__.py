"""Collections: a SQLite chunk store with vectors and derived indexes, one directory per collection."""

from ragjet.store.catalog import delete_collection, list_collections
from ragjet.store.collection import Collection
from ragjet.store.errors import CollectionBusyError, CollectionError, CollectionNotFoundError, EmbedderMismatchError
from ragjet.store.sharded import (
    AnyCollection,
    ShardedCollection,
    collection_version,
    create_collection,
    open_collection,
    repair_collection,
)
from ragjet.store.types import CollectionInfo, DocumentInfo

__all__ = [
    "AnyCollection",
    "Collection",
    "CollectionBusyError",
    "CollectionError",
    "CollectionInfo",
    "CollectionNotFoundError",
    "DocumentInfo",
    "EmbedderMismatchError",
    "ShardedCollection",
    "collection_version",
    "create_collection",
    "delete_collection",
    "list_collections",
    "open_collection",
    "repair_collection",
]
