"""Chunk-affinity routing: prompts that open with the same retrieved chunk go to the same generation replica.

Each replica's engine caches KV blocks by the hash of everything before them (prefix caching), so two prompts share
cached blocks only up to their first difference. A RAG prompt is the chat template, the system prompt, then the
sources in rank order, then the question: two questions whose best source is the same chunk share every block up to
the end of that chunk, which is most of the prompt's cost. The key is therefore the prompt up to the end of its
first source. Ray Serve LLM's PrefixCacheAffinityRouter reaches a similar end with a prefix tree of past prompts held
in an actor and a match-rate threshold; a key that the prompt's own structure gives needs no shared state, so every
ingress replica routes the same key the same way without talking to the others.

Replicas are ranked for a key by rendezvous (highest-random-weight) hashing: the preferred replica of a key changes
only when that replica leaves, so adding, removing or restarting one replica moves only its own keys. A preferred
replica with a full queue (`max_ongoing_requests`) spills to the key's second choice, and so on, in the same order
every time, so a hot key warms at most a few caches instead of all of them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

AFFINITY_KWARG = "affinity_key"  # the keyword argument of a generation call that carries the key
SECOND_SOURCE = "\n\n[2] "  # rag/prompt.py: sources are "[n] header" blocks separated by blank lines
QUESTION = "\n\nQuestion: "
MAX_KEY_CHARS = 4000  # prompts without sources (chat without retrieval) are keyed on their opening this long


def affinity_key(prompt: str) -> str:
    """A digest of the prompt up to the end of its first source (or its opening, for a prompt without sources)."""
    end = prompt.find(SECOND_SOURCE)
    if end < 0:
        end = prompt.find(QUESTION)
    head = prompt[: end if end >= 0 else MAX_KEY_CHARS]
    return hashlib.blake2b(head.encode(), digest_size=16).hexdigest()


def rank_replicas(key: str, replica_ids: Sequence[str]) -> list[str]:
    """`replica_ids` in the key's order of preference (rendezvous hashing: highest digest of key + id first)."""

    def weight(replica_id: str) -> bytes:
        return hashlib.blake2b(f"{key}/{replica_id}".encode(), digest_size=8).digest()

    return sorted(replica_ids, key=weight, reverse=True)


class ChunkAffinityRouter(RequestRouter):
    """Ray Serve request router of the generation deployment: by `affinity_key`, else two random replicas.

    Ray probes the replicas of each returned rank for queue room and takes the first rank with some, so returning
    one replica per rank, in preference order, is "the preferred replica unless it is full".
    """

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # all full: back off before asking again
        key = None if pending_request is None else pending_request.kwargs.get(AFFINITY_KWARG)
        if not candidate_replicas:
            return []
        if key is None:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        return [[by_id[replica_id]] for replica_id in rank_replicas(key, list(by_id))]
