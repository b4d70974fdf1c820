"""Continuous batching: which sequences run in the next forward pass, and how many tokens of each.

Every step is mixed, within a budget of `max_num_batched_tokens`: each decoding sequence brings one
token, sequences still prefilling bring their next chunk of prompt, and waiting sequences are admitted
with a first chunk while budget is left. So new requests start at once, and a long prompt (or a burst
of them) is prefilled over several steps instead of stalling every stream for one long step. When a
decode needs a block and the pool is empty, the most recently admitted sequence is preempted: its
blocks are freed and it goes back to the front of the queue, to be recomputed later (its prefix blocks
often still cached). In small decode-only steps greedy sequences also bring a prompt-lookup draft
(spec_decode.py) to verify, within the same token budget: the scheduler plans the whole step. No torch here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.chunk_reuse import ChunkReuse
from ragjet.llm.engine.errors import EngineOverloadedError
from ragjet.llm.engine.sequence import Sequence, SequenceStatus
from ragjet.llm.engine.spec_decode import propose_draft


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_num_seqs: int
    max_num_batched_tokens: int
    max_waiting: int
    num_speculative_tokens: int = 0  # draft tokens a greedy decode may bring (0 = none)
    max_speculative_seqs: int = 4  # drafts only in decode steps of at most this many sequences


class Scheduler:
    def __init__(self, config: SchedulerConfig, allocator: BlockAllocator, chunk_reuse: ChunkReuse | None = None):
        """``chunk_reuse``: blend mode, planning each admitted prompt's chunk imports (None: prefix caching only)."""
        self.config, self.allocator, self.chunk_reuse = config, allocator, chunk_reuse
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        """Queue `seq`; those that free running slots will take at the next step do not count as waiting."""
        free_slots = max(0, self.config.max_num_seqs - len(self.running))
        if len(self.waiting) >= self.config.max_waiting + free_slots:
            raise EngineOverloadedError(
                f"engine overloaded: {len(self.waiting)} requests already waiting (limit {self.config.max_waiting}); "
                "retry later"
            )
        self.waiting.append(seq)

    def schedule(self) -> tuple[list[Sequence], list[Sequence]]:
        """(sequences to run this step, each with its `num_scheduled_tokens` and `draft_ids`; sequences that timed
        out). Decodes first (always, one token each), then running prefills' next chunks, then admissions; a
        step of decodes alone gets drafts from what budget is left. The step's tokens never exceed the budget
        (but for one token per decode: a running stream always advances).
        """
        timed_out = self._expire(time.monotonic())
        for seq in list(self.running):
            while seq in self.running and not self.allocator.can_append(seq):
                self._preempt(self.running[-1])
            if seq in self.running:
                self.allocator.append_slot(seq)
        budget = self.config.max_num_batched_tokens - sum(1 for s in self.running if s.num_new_tokens == 1)
        for seq in self.running:
            if seq.num_new_tokens == 1:
                seq.num_scheduled_tokens = 1
            else:  # a prompt that earlier steps prefilled in part: its next chunk, while budget is left
                budget -= self._schedule_chunk(seq, budget)
        while self.waiting and len(self.running) < self.config.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            if not self.allocator.can_allocate(seq):
                break
            self.waiting.popleft()
            self.allocator.allocate(seq)
            if self.chunk_reuse is not None and seq.chunk_spans:
                self.chunk_reuse.admit(seq, budget)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            budget -= self._schedule_chunk(seq, budget)
        batch = [s for s in self.running if s.num_scheduled_tokens]
        self._schedule_drafts(batch, budget)
        return batch, timed_out

    def _schedule_drafts(self, batch: list[Sequence], budget: int) -> None:
        """Prompt-lookup drafts for greedy sequences of a small decode-only step, within ``budget`` tokens."""
        max_draft = self.config.num_speculative_tokens
        if not max_draft or len(batch) > self.config.max_speculative_seqs or any(s.num_new_tokens != 1 for s in batch):
            return
        for seq in batch:
            room = min(max_draft, seq.max_len - seq.num_tokens - 1, budget)  # the step's own token comes on top
            if not seq.params.is_greedy or seq.params.has_penalty or room <= 0:
                continue
            draft = propose_draft(seq.token_ids, room)
            if draft:
                fits = self.allocator.reserve(seq, seq.num_tokens + len(draft)) - seq.num_tokens
                seq.draft_ids = draft[:fits]
                budget -= len(seq.draft_ids)

    def _schedule_chunk(self, seq: Sequence, budget: int) -> int:
        """Give `seq` as much of its uncomputed prompt as `budget` allows (a blend step: its positions, which
        admission fitted in the budget); returns how many tokens."""
        if seq.compute_positions:
            seq.num_scheduled_tokens = len(seq.compute_positions)
        else:
            seq.num_scheduled_tokens = max(0, min(seq.num_new_tokens, budget))
        # The blocks this chunk completes enter the prefix cache now: a later admission in this step can share them.
        upto = seq.num_tokens if seq.compute_positions else seq.num_computed_tokens + seq.num_scheduled_tokens
        self.allocator.register_computed(seq, upto)
        return seq.num_scheduled_tokens

    def finish(self, seq: Sequence, reason: str) -> None:
        """Drop a sequence from whichever queue holds it and free its blocks (abort, stop, timeout)."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.allocator.free_sequence(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status, seq.finish_reason = SequenceStatus.FINISHED, reason

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.allocator.free_sequence(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def _expire(self, now: float) -> list[Sequence]:
        expired = [s for s in (*self.running, *self.waiting) if s.deadline is not None and now > s.deadline]
        for seq in expired:
            self.finish(seq, "timeout")
        return expired
