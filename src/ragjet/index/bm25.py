"""Keyword search (BM25) over chunk texts, the lexical half of hybrid retrieval and the backup index.

Scores are computed here, not read from bm25s's precomputed matrix: a precomputed score bakes in one
index's corpus statistics (N, average length, document frequencies), and a sharded collection must score
each shard's chunks with the whole collection's statistics so that the merged ranking equals the unsharded
one (`BM25Stats`). The formula is bm25s's Lucene variant (k1 = 1.5, b = 0.75), which the tests hold it to.
Postings are rebuilt on the next search after a change: ingestion makes many changes and then searches.
Tokens are lowercased words including underscores and digits, so identifiers such as `__init__` or
`yield_from` stay whole; English stopwords are dropped.
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from ragjet.atomic import atomic_write

TOKEN = re.compile(r"\w+")
STOPWORDS = frozenset(STOPWORDS_EN)
K1, B = 1.5, 0.75


def tokenize(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class BM25Stats:
    """The corpus statistics a BM25 score depends on, for the terms of one query.

    Scores computed under the same statistics are comparable across indexes: shards report theirs, the sums
    are the collection's, and every shard then scores with those (`BM25Index.search(..., stats=)`).
    """

    num_docs: int
    total_len: int  # tokens over all documents
    doc_freqs: dict[str, int]  # documents containing each query term

    @classmethod
    def merged(cls, parts: Sequence[BM25Stats]) -> BM25Stats:
        doc_freqs: dict[str, int] = {}
        for part in parts:
            for term, df in part.doc_freqs.items():
                doc_freqs[term] = doc_freqs.get(term, 0) + df
        return cls(sum(p.num_docs for p in parts), sum(p.total_len for p in parts), doc_freqs)


@dataclass(frozen=True, slots=True)
class _Postings:
    """Term frequencies as a compressed sparse column matrix (documents x vocabulary), built from the texts."""

    ids: np.ndarray  # (D,) int64 chunk ids, ascending
    lengths: np.ndarray  # (D,) float64 tokens per document
    indptr: np.ndarray  # (V + 1,) int64: term t's postings are rows[indptr[t]:indptr[t + 1]]
    rows: np.ndarray  # (P,) int64 document rows
    freqs: np.ndarray  # (P,) float64 term frequencies
    vocab: dict[str, int]

    @classmethod
    def build(cls, texts: dict[int, str]) -> _Postings:
        ids = np.fromiter(sorted(texts), dtype=np.int64, count=len(texts))
        vocab: dict[str, int] = {}
        cols, rows, lengths = [], [], np.zeros(len(ids))
        for row, chunk in enumerate(ids.tolist()):
            tokens = tokenize(texts[chunk])
            lengths[row] = len(tokens)
            cols += [vocab.setdefault(t, len(vocab)) for t in tokens]
            rows += [row] * len(tokens)
        n = max(len(ids), 1)
        keys, freqs = np.unique(np.asarray(cols, np.int64) * n + np.asarray(rows, np.int64), return_counts=True)
        indptr = np.searchsorted(keys // n, np.arange(len(vocab) + 1))  # keys are sorted by term, then row
        return cls(ids, lengths, indptr.astype(np.int64), keys % n, freqs.astype(np.float64), vocab)

    def stats(self, terms: list[str]) -> BM25Stats:
        cols = {t: c for t in terms if (c := self.vocab.get(t)) is not None}
        doc_freqs = {t: int(self.indptr[c + 1] - self.indptr[c]) for t, c in cols.items()}
        return BM25Stats(len(self.ids), int(self.lengths.sum()), doc_freqs)

    def scores(self, terms: list[str], stats: BM25Stats) -> np.ndarray:
        """(D,) float64. Each term adds its part in query order, so a chunk's score does not depend on its shard."""
        scores = np.zeros(len(self.ids))
        avg_len = stats.total_len / max(stats.num_docs, 1)
        for term in terms:
            col = self.vocab.get(term)
            if col is None:
                continue
            df = stats.doc_freqs[term]
            idf = math.log(1 + (stats.num_docs - df + 0.5) / (df + 0.5))
            span = slice(self.indptr[col], self.indptr[col + 1])
            rows, tf = self.rows[span], self.freqs[span]
            scores[rows] += idf * tf / (tf + K1 * (1 - B + B * self.lengths[rows] / avg_len))
        return scores


EMPTY = _Postings.build({})


class BM25Index:
    kind = "bm25"

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}
        self._postings: _Postings | None = None
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
            self._postings = None

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            for i in np.asarray(ids, dtype=np.int64).tolist():
                self._texts.pop(i, None)
            self._postings = None

    def stats(self, query: str) -> BM25Stats:
        """This index's share of the statistics `query` is scored with (summed over shards by BM25Stats.merged)."""
        return self._current().stats(tokenize(query))

    def search(
        self, query: str, k: int, allowed_ids: np.ndarray | None = None, stats: BM25Stats | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores (k,) float64, ids (k,) int64), best first, equal scores by ascending id; padded with -inf / -1.

        Only documents sharing a term with the query score above 0. `stats`: the collection-wide statistics
        when this index is one shard of a collection; by default this index's own.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        out_scores, out_ids = np.full(k, -np.inf), np.full(k, -1, dtype=np.int64)
        postings, terms = self._current(), tokenize(query)
        all_scores = postings.scores(terms, stats if stats is not None else postings.stats(terms))
        if allowed_ids is not None:
            all_scores[~np.isin(postings.ids, allowed_ids)] = 0.0
        top = np.lexsort((postings.ids, -all_scores))[:k]
        top = top[all_scores[top] > 0]
        out_scores[: len(top)], out_ids[: len(top)] = all_scores[top], postings.ids[top]
        return out_scores, out_ids

    def _current(self) -> _Postings:
        with self._lock:
            if self._postings is None:
                self._postings = _Postings.build(self._texts) if self._texts else EMPTY
            return self._postings

    def save(self, path: Path) -> None:
        """One compressed JSON file of ids and texts; the postings are rebuilt from them on load."""
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
