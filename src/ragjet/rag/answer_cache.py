"""Answers to repeated questions, served without retrieval or generation.

A question asked again, word for word or nearly (its embedding at least `similarity` cosine to a cached
question's), of the same collection in the same version, with the same options, gets the cached answer and
its citations. The collection's version is part of the key, so any ingest or delete makes every earlier
entry unreachable (and it ages out); so is everything that shapes an answer (top_k, filters, sampling,
stops, max_tokens). Only answers that are worth repeating are kept: deterministic (greedy, or seeded), not
degraded by a fallback, not flagged for review. Entries are evicted least recently used.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ragjet.rag.types import Answer, AskOptions, StageTimings


@dataclass(frozen=True, slots=True)
class CacheScope:
    """What must match for an answer to be reused: whose collection, which version, which options."""

    tenant: str
    collection: str
    version: str
    options: str  # the answer-shaping options, as canonical JSON

    @classmethod
    def of(cls, options: AskOptions, version: str) -> CacheScope:
        shaping = {"top_k": options.top_k, "filters": options.filters, "max_tokens": options.max_tokens,
                   "temperature": options.temperature, "top_p": options.top_p, "seed": options.seed,
                   "stop": list(options.stop)}  # fmt: skip
        return cls(options.tenant, options.collection, version, json.dumps(shaping, sort_keys=True, default=str))


@dataclass(slots=True)
class _Entry:
    question: str
    vector: np.ndarray  # unit-length question embedding
    answer: Answer


class AnswerCache:
    def __init__(self, max_entries: int, similarity: float):
        self.max_entries, self.similarity = max_entries, similarity
        self._entries: OrderedDict[tuple[CacheScope, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def lookup(self, scope: CacheScope, question: str, vector: np.ndarray | None = None) -> Answer | None:
        """The cached answer for this exact question, else (given its embedding) for the most similar one above
        the threshold; None on a miss. The caller owns the returned copy. Asked without the embedding first, a
        repeated question is answered before any model work (about a millisecond)."""
        with self._lock:
            entry = self._entries.get((scope, _normal(question)))
            if entry is None and vector is not None:
                entry = self._nearest(scope, vector)
            if entry is None:
                return None
            self._entries.move_to_end((scope, _normal(entry.question)))
            self.hits += 1
            return dataclasses.replace(entry.answer, citations=list(entry.answer.citations))

    def _nearest(self, scope: CacheScope, vector: np.ndarray) -> _Entry | None:
        candidates = [e for (s, _), e in self._entries.items() if s == scope]
        if not candidates:
            return None
        scores = np.stack([e.vector for e in candidates]) @ vector
        best = int(np.argmax(scores))
        return candidates[best] if scores[best] >= self.similarity else None

    def store(self, scope: CacheScope, question: str, vector: np.ndarray, answer: Answer) -> bool:
        """Keep `answer` if it is worth repeating; returns whether it was kept."""
        if not self.max_entries or not worth_caching(answer, scope):
            return False
        with self._lock:
            self._entries[(scope, _normal(question))] = _Entry(question, np.asarray(vector, np.float32), answer)
            self._entries.move_to_end((scope, _normal(question)))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._entries)


def from_cache(cached: Answer, request_id: str, timings: StageTimings) -> Answer:
    """A cached answer served to a new request: its own id and timings, marked as from the cache."""
    return dataclasses.replace(cached, request_id=request_id, timings=timings, review_id=None, from_cache=True)


def worth_caching(answer: Answer, scope: CacheScope) -> bool:
    options = json.loads(scope.options)
    deterministic = options["temperature"] == 0 or options["seed"] is not None
    complete = answer.finish_reason in ("stop", "length")
    return deterministic and complete and answer.degraded is None and not answer.needs_review


def _normal(question: str) -> str:
    return " ".join(question.lower().split())
