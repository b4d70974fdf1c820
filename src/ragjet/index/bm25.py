"""Keyword search (BM25, via bm25s) over chunk texts, the lexical half of hybrid retrieval and the backup index.

bm25s builds an immutable index, so changes are collected and the index is rebuilt on the next search
after them: ingestion makes many changes and then searches, which makes that one rebuild per batch.
Tokens are lowercased words including underscores and digits, so identifiers such as `__init__` or
`yield_from` stay whole; English stopwords are dropped.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from ragjet.atomic import atomic_write

TOKEN = re.compile(r"\w+")
STOPWORDS = frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


class BM25Index:
    kind = "bm25"

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}
        self._model: bm25s.BM25 | None = None
        self._model_ids = np.empty(0, dtype=np.int64)
        self._vocab: dict[str, int] = {}
        self._lock = threading.Lock()  # searches run in worker threads; one of them rebuilds

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, ids: np.ndarray, texts: list[str]) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(texts),):
            raise ValueError(f"got {len(ids)} ids for {len(texts)} texts")
        if len(set(ids.tolist())) != len(ids) or any(int(i) in self._texts for i in ids):
            raise ValueError("ids must be unique and not already in the index")
        with self._lock:
            self._texts.update(zip(ids.tolist(), texts, strict=True))
            self._model = None

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            for i in np.asarray(ids, dtype=np.int64).tolist():
                self._texts.pop(i, None)
            self._model = None

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores (k,), ids (k,)) best first; only documents sharing a term with the query score above 0."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scores, ids = np.full(k, -np.inf, dtype=np.float32), np.full(k, -1, dtype=np.int64)
        model, model_ids, vocab = self._current()
        terms = [t for t in tokenize(query) if t in vocab]
        if model is None or not terms:
            return scores, ids
        all_scores = model.get_scores(terms).astype(np.float32)
        if allowed_ids is not None:
            all_scores[~np.isin(model_ids, allowed_ids)] = 0.0
        top = np.argsort(-all_scores, kind="stable")[:k]
        top = top[all_scores[top] > 0]
        scores[: len(top)], ids[: len(top)] = all_scores[top], model_ids[top]
        return scores, ids

    def _current(self) -> tuple[bm25s.BM25 | None, np.ndarray, dict[str, int]]:
        with self._lock:
            if self._model is None and self._texts:
                self._model_ids = np.fromiter(self._texts, dtype=np.int64, count=len(self._texts))
                corpus = [tokenize(t) or [""] for t in self._texts.values()]
                model = bm25s.BM25()
                model.index(corpus, show_progress=False)
                self._model, self._vocab = model, model.vocab_dict
            return self._model, self._model_ids, self._vocab

    def save(self, path: Path) -> None:
        """One compressed JSON file of ids and texts; the bm25s index is rebuilt from them on load."""
        with self._lock:
            payload = json.dumps({"kind": self.kind, "ids": list(self._texts), "texts": list(self._texts.values())})
        with atomic_write(path) as f:
            f.write(zlib.compress(payload.encode(), 1))

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        try:
            data = json.loads(zlib.decompress(path.read_bytes()))
            ids, texts = np.asarray(data["ids"], dtype=np.int64), list(data["texts"])
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as exc:
            raise ValueError(f"{path}: not a readable BM25 index ({exc}); rebuild it from the chunk store") from exc
        index = cls()
        index.add(ids, texts)
        return index
