"""The source of truth of a collection: one SQLite file (WAL) with documents, chunks and their vectors.

Everything else in a collection directory (vector index, BM25, manifest) is derived from this file and
can be rebuilt from it. Each document is replaced in one transaction, so a process killed at any point
leaves every document either in its old or its new state. Chunk rowids never repeat (AUTOINCREMENT);
they are the ids the indexes store, so a stale index can never point at a different chunk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragjet.ingest.document import Chunk, Document
from ragjet.store.errors import CollectionError
from ragjet.store.types import DocumentInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading TEXT NOT NULL,
    page INTEGER,
    num_tokens INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
"""

FILTER_COLUMNS = {
    "source": "d.source = ?",
    "source_prefix": "substr(d.source, 1, length(?)) = ?",
    "title": "d.title = ?",
    "heading": "c.heading = ?",
    "page": "c.page = ?",
    "page_min": "c.page >= ?",
    "page_max": "c.page <= ?",
}


def check_filters(filters: Mapping[str, object]) -> None:
    """ValueError naming the first unknown filter: the user's mistake, told before any shard is searched."""
    for key in filters:
        if not key.startswith("metadata.") and key not in FILTER_COLUMNS:
            raise ValueError(f"unknown filter {key!r}; filters are {', '.join([*FILTER_COLUMNS, 'metadata.<key>'])}")


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk row joined with its document, as retrieval returns it."""

    id: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    text: str


class ChunkStore:
    """SQLite access for one collection; one connection per thread, since searches run in worker threads."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    @classmethod
    def create(cls, path: Path, meta: Mapping[str, object]) -> ChunkStore:
        store = cls(path)
        store._conn().executescript(SCHEMA)
        with store._transaction() as conn:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            conn.execute("INSERT INTO meta VALUES ('generation', '0')")
        return store

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # a committed document survives power loss, not just a crash
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise CollectionError(f"{self.path}: not a readable chunk store ({exc})") from exc
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken up front, so a read-then-write block cannot interleave."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def meta(self) -> dict[str, object]:
        try:
            rows = self._conn().execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CollectionError(f"{self.path}: the chunk store is damaged ({exc})") from exc
        return {key: json.loads(value) for key, value in rows}

    def generation(self) -> int:
        return int(self._conn().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def counts(self) -> tuple[int, int]:
        conn = self._conn()
        return (
            conn.execute("SELECT count(*) FROM documents").fetchone()[0],
            conn.execute("SELECT count(*) FROM chunks").fetchone()[0],
        )

    def content_hash(self, source: str) -> str | None:
        row = self._conn().execute("SELECT content_hash FROM documents WHERE source = ?", (source,)).fetchone()
        return None if row is None else row[0]

    def documents(self) -> list[DocumentInfo]:
        rows = self._conn().execute(
            "SELECT d.source, d.title, d.content_hash, count(c.id), d.ingested_at FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id ORDER BY d.source"
        )
        return [DocumentInfo(*row) for row in rows]

    def put_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Replace `doc` (or add it) in one transaction; returns (removed chunk ids, added chunk ids)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction() as conn:
            removed = self._delete(conn, doc.source)
            cur = conn.execute(
                "INSERT INTO documents (source, title, content_hash, metadata, ingested_at) VALUES (?, ?, ?, ?, ?)",
                (doc.source, doc.title, doc.content_hash, json.dumps(doc.metadata), time.time()),
            )
            document_id = cur.lastrowid
            added = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                cur = conn.execute(
                    "INSERT INTO chunks (chunk_id, document_id, ordinal, text, heading, page, num_tokens, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (chunk.id, document_id, chunk.ordinal, chunk.text, chunk.heading, chunk.page, chunk.num_tokens,
                     vector.tobytes()),
                )  # fmt: skip
                added.append(cur.lastrowid)
            self._bump_generation(conn)
        return removed, np.asarray(added, dtype=np.int64)

    def delete_document(self, source: str) -> np.ndarray | None:
        """Remove `source` and its chunks; returns the removed chunk ids, or None if it was not stored."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM documents WHERE source = ?", (source,)).fetchone() is None:
                return None
            removed = self._delete(conn, source)
            self._bump_generation(conn)
        return removed

    def _delete(self, conn: sqlite3.Connection, source: str) -> np.ndarray:
        ids = conn.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source = ?", (source,)
        ).fetchall()
        conn.execute("DELETE FROM documents WHERE source = ?", (source,))  # chunks go with it (ON DELETE CASCADE)
        return np.asarray([i for (i,) in ids], dtype=np.int64)

    @staticmethod
    def _bump_generation(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('updated_at', ?)", (json.dumps(time.time()),))

    def last_chunk_id(self) -> int:
        """The highest chunk id ever given out (AUTOINCREMENT keeps it after deletes); 0 before the first chunk."""
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return 0 if row is None else int(row[0])

    def continue_ids_after(self, last_id: int) -> None:
        """The next chunk stored gets an id above `last_id`: the shards of a collection share one id sequence."""
        with self._transaction() as conn:
            moved = conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'chunks'", (last_id,))
            if moved.rowcount == 0:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('chunks', ?)", (last_id,))

    def iter_chunks(self, batch_rows: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Every chunk as (ids, vectors, texts) batches: the input of an index rebuild."""
        cursor = self._conn().execute("SELECT id, vector, text FROM chunks ORDER BY id")
        while rows := cursor.fetchmany(batch_rows):
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            yield ids, vectors, [r[2] for r in rows]

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids still stored, their full-precision vectors), in the order given: what exact rescoring reads.

        An index opened before a concurrent writer replaced a document may name chunks that are gone;
        they are dropped here rather than served.
        """
        rows = dict(self._select_in("SELECT id, vector FROM chunks WHERE id IN ({})", ids))
        found = np.asarray([i for i in ids if int(i) in rows], dtype=np.int64)
        vectors = [np.frombuffer(rows[int(i)], dtype=np.float32) for i in found]
        return found, (np.stack(vectors) if vectors else np.empty((0, 0), dtype=np.float32))

    def chunks(self, ids: np.ndarray) -> list[StoredChunk]:
        sql = (
            "SELECT c.id, c.chunk_id, d.source, d.title, c.heading, c.page, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document_id WHERE c.id IN ({})"
        )
        rows = {row[0]: StoredChunk(*row) for row in self._select_in(sql, ids)}
        return [rows[int(i)] for i in ids if int(i) in rows]

    def _select_in(self, sql: str, ids: np.ndarray) -> list[tuple]:
        params = [int(i) for i in ids]
        return self._conn().execute(sql.format(",".join("?" * len(params))), params).fetchall() if params else []

    def ids_matching(self, filters: Mapping[str, object]) -> np.ndarray:
        """Chunk ids whose document or chunk matches every filter (the allowed set passed to the indexes)."""
        check_filters(filters)
        clauses, params = [], []
        for key, value in filters.items():
            if key.startswith("metadata."):
                clauses.append("json_extract(d.metadata, ?) = ?")
                params += [f'$."{key.removeprefix("metadata.")}"', value]
            else:
                clauses.append(FILTER_COLUMNS[key])
                params += [value] * FILTER_COLUMNS[key].count("?")
        sql = "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
        rows = self._conn().execute(sql + " WHERE " + " AND ".join(clauses), params) if clauses else []
        return np.asarray([i for (i,) in rows], dtype=np.int64)
