"""Continuous batching: which sequences run in the next forward pass.

Every step is mixed: each running sequence decodes one token, and waiting sequences are admitted
(their whole uncached prompt prefilled) in the same forward while the token budget allows. So new
requests start at once without stalling the ones already decoding. When a decode needs a block and
the pool is empty, the most recently admitted sequence is preempted: its blocks are freed and it goes
back to the front of the queue, to be recomputed later (its prefix blocks often still cached).
No torch here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.errors import EngineOverloadedError
from ragjet.llm.engine.sequence import Sequence, SequenceStatus


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_num_seqs: int
    max_num_batched_tokens: int
    max_waiting: int


class Scheduler:
    def __init__(self, config: SchedulerConfig, allocator: BlockAllocator):
        self.config, self.allocator = config, allocator
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
        """(sequences to run this step, sequences that timed out); running ones first, then admitted."""
        timed_out = self._expire(time.monotonic())
        for seq in list(self.running):
            while seq in self.running and not self.allocator.can_append(seq):
                self._preempt(self.running[-1])
            if seq in self.running:
                self.allocator.append_slot(seq)
        budget = self.config.max_num_batched_tokens - len(self.running)
        while self.waiting and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if not self.allocator.can_allocate(seq) or (seq.num_tokens > budget and self.running):
                break  # a prompt larger than the whole budget still runs, alone
            self.waiting.popleft()
            self.allocator.allocate(seq)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            budget -= seq.num_new_tokens
        return list(self.running), timed_out

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
