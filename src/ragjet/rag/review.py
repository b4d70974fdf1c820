"""The human review queue: low-confidence answers wait here, and resolved ones answer the question next time.

One SQLite file (WAL) under the data dir. An item keeps what a reviewer needs to judge the answer: the
question, the answer, its citations and scores. Resolving an item stores the corrected answer; a later
request asking the same question of the same collection gets that answer instead of a new generation.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ragjet.rag.types import Answer

Status = Literal["pending", "resolved"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    collection TEXT NOT NULL,
    question TEXT NOT NULL,
    question_key TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    confidence REAL,
    scores TEXT NOT NULL,
    status TEXT NOT NULL,
    resolution TEXT,
    reviewer TEXT,
    created_at REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX IF NOT EXISTS review_lookup ON review_items (tenant, collection, question_key, status);
"""


_INSERT = (
    "INSERT INTO review_items (id, tenant, collection, question, question_key, answer, citations,"
    " confidence, scores, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)"
)


@dataclass(slots=True)
class _PendingAdd:
    """One add waiting for the group commit that will carry it."""

    row: tuple[object, ...]
    is_done: bool = False
    error: sqlite3.Error | None = None


class ReviewItemNotFoundError(KeyError):
    def __init__(self, item_id: str):
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"no review item {self.item_id!r}"


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: str
    tenant: str
    collection: str
    question: str
    answer: str
    citations: list[dict[str, object]]
    confidence: float | None
    scores: dict[str, float]
    status: Status
    resolution: str | None
    reviewer: str | None
    created_at: float
    resolved_at: float | None


def question_key(question: str) -> str:
    """Case, punctuation and spacing do not make a different question."""
    return " ".join(re.findall(r"\w+", question.lower()))


class ReviewQueue:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Two connections shared by the server's threads: writes on one, reads on the other, so that under
        # load a lookup (every request makes one) never waits behind a write's fsync (WAL lets them overlap).
        self._lock = threading.Lock()  # guards the write connection
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._pending_lock = threading.Lock()
        self._pending: list[_PendingAdd] = []

    def add(self, tenant: str, collection: str, question: str, answer: Answer) -> str:
        item_id = uuid.uuid4().hex[:16]
        citations = [asdict(c) for c in answer.citations]
        scores = {"confidence": answer.confidence or 0.0, **answer.timings.as_dict()}
        row = (item_id, tenant, collection, question, question_key(question), answer.text, json.dumps(citations),
               answer.confidence, json.dumps(scores), time.time())  # fmt: skip
        mine = _PendingAdd(row)
        with self._pending_lock:
            self._pending.append(mine)
        with self._lock:
            if not mine.is_done:  # no earlier writer committed it along with its own: commit every pending add
                self._commit_pending()
        if mine.error is not None:
            raise mine.error
        return item_id

    def _commit_pending(self) -> None:
        """Group commit: one transaction, so one fsync, for every add waiting now (holding the write lock)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_INSERT, [add.row for add in batch])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for add in batch:
                add.error = exc
        for add in batch:
            add.is_done = True

    def list(self, tenant: str, status: Status | None = None, limit: int = 100) -> list[ReviewItem]:
        query, args = "SELECT * FROM review_items WHERE tenant = ?", [tenant]
        if status is not None:
            query, args = query + " AND status = ?", [tenant, status]
        with self._read_lock:
            rows = self._reader.execute(query + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [_item(row) for row in rows]

    def get(self, tenant: str, item_id: str) -> ReviewItem:
        """The item, if it belongs to `tenant` (another tenant's id is reported as unknown)."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT * FROM review_items WHERE id = ? AND tenant = ?", (item_id, tenant)
            ).fetchone()
        if row is None:
            raise ReviewItemNotFoundError(item_id)
        return _item(row)

    def resolve(self, tenant: str, item_id: str, resolution: str, reviewer: str | None = None) -> ReviewItem:
        """Store the reviewed answer; an empty `resolution` approves the original as is."""
        item = self.get(tenant, item_id)
        final = resolution.strip() or item.answer
        with self._lock:
            self._db.execute(
                "UPDATE review_items SET status = 'resolved', resolution = ?, reviewer = ?, resolved_at = ?"
                " WHERE id = ?",
                (final, reviewer, time.time(), item_id),
            )
        return self.get(tenant, item_id)

    def resolved_answer(self, tenant: str, collection: str, question: str) -> ReviewItem | None:
        """The latest resolved item for this question in this collection, if a reviewer answered it."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT * FROM review_items WHERE tenant = ? AND collection = ? AND question_key = ?"
                " AND status = 'resolved' ORDER BY resolved_at DESC LIMIT 1",
                (tenant, collection, question_key(question)),
            ).fetchone()
        return None if row is None else _item(row)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()


_COLUMNS = (
    "id",
    "tenant",
    "collection",
    "question",
    "question_key",
    "answer",
    "citations",
    "confidence",
    "scores",
    "status",
    "resolution",
    "reviewer",
    "created_at",
    "resolved_at",
)


def _item(row: tuple[object, ...]) -> ReviewItem:
    values = dict(zip(_COLUMNS, row, strict=True))
    values.pop("question_key")
    values["citations"] = json.loads(str(values["citations"]))
    values["scores"] = json.loads(str(values["scores"]))
    return ReviewItem(**values)  # type: ignore[arg-type]
