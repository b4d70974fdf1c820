"""The scheduler on its own (no model, no torch): what each step computes, within its token budget, drafts
included; admission order, chunked prefill, preemption, overload and deadlines."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.errors import EngineOverloadedError
from ragjet.llm.engine.scheduler import Scheduler, SchedulerConfig
from ragjet.llm.engine.sequence import Sequence, SequenceStatus
from ragjet.llm.sampling_params import SamplingParams

GREEDY = SamplingParams(temperature=0.0)
REPEATING = [1, 2, 3, 4] * 3  # a prompt whose suffix recurs: prompt lookup always finds a draft


def seq(token_ids: list[int], params: SamplingParams = GREEDY, name: str = "r") -> Sequence:
    return Sequence(name, list(token_ids), len(token_ids), params, None, max_len=1000)  # type: ignore[arg-type]


def scheduler(num_blocks: int = 64, budget: int = 64, **config: int) -> Scheduler:
    settings = {"max_num_seqs": 8, "max_num_batched_tokens": budget, "max_waiting": 4, **config}
    return Scheduler(SchedulerConfig(**settings), BlockAllocator(num_blocks, block_size=4))


def step(sched: Scheduler) -> list[Sequence]:
    """Schedule, then advance every sequence as the engine would after a forward (drafts all rejected); each
    new token repeats the one four back, so the sequences keep their period and prompt lookup keeps finding it."""
    batch, _ = sched.schedule()
    sched.allocator.mark_computed()
    for s in batch:
        if s.is_prefill_chunk:
            s.num_computed_tokens += s.num_scheduled_tokens
        else:
            s.num_computed_tokens = s.num_tokens
            s.token_ids.append(s.token_ids[-4] if s.num_tokens >= 4 else 0)
        s.num_scheduled_tokens, s.draft_ids = 0, []
    return batch


def step_tokens(batch: list[Sequence]) -> int:
    return sum(s.num_scheduled_tokens + len(s.draft_ids) for s in batch)


def test_the_scheduler_and_block_manager_import_no_torch() -> None:
    code = "import sys, ragjet.llm.engine.scheduler, ragjet.llm.engine.block_manager; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_decodes_come_first_then_prefill_chunks_then_admissions_within_the_budget() -> None:
    sched = scheduler(budget=8)
    decoding = [seq([5, 6], name="a"), seq([7, 8], name="b")]
    for s in decoding:
        sched.add(s)
    step(sched)  # both prompts prefill together (4 tokens)
    long = seq(list(range(100, 120)), name="long")
    sched.add(long)
    batch, _ = sched.schedule()
    assert [s.request_id for s in batch] == ["a", "b", "long"]
    assert [s.num_scheduled_tokens for s in batch] == [1, 1, 6]  # the prompt gets what the decodes left
    assert long.is_prefill_chunk


def test_a_long_prompt_is_prefilled_in_chunks_while_streams_decode() -> None:
    sched = scheduler(budget=8)
    stream, long = seq([5, 6], name="stream"), seq(list(range(100, 120)), name="long")
    sched.add(stream)
    step(sched)
    sched.add(long)
    chunks = []
    while not long.output_ids:
        computed = long.num_computed_tokens
        batch = step(sched)
        assert stream in batch and step_tokens(batch) <= 8
        chunks.append((long.num_computed_tokens if not long.output_ids else long.num_prompt_tokens) - computed)
    assert chunks == [7, 7, 6] and len(stream.output_ids) == 1 + len(chunks)  # the stream advanced every step


def decode_all(sched: Scheduler, streams: list[Sequence]) -> None:
    """Steps until every stream has an output token: from then on they all decode."""
    while not all(s.output_ids for s in streams):
        step(sched)


def test_drafts_count_in_the_step_budget() -> None:
    """Two greedy decodes with drafts of up to 3 tokens each, in a 4-token budget: 2 tokens of draft in all."""
    sched = scheduler(budget=4, num_speculative_tokens=3)
    streams = [seq(REPEATING, name="a"), seq(REPEATING, name="b")]
    for s in streams:
        sched.add(s)
    decode_all(sched, streams)
    batch, _ = sched.schedule()
    assert step_tokens(batch) == 4 and [len(s.draft_ids) for s in batch] == [2, 0]  # the first takes what is left
    roomy = scheduler(budget=64, num_speculative_tokens=3)
    lone = seq(REPEATING)
    roomy.add(lone)
    decode_all(roomy, [lone])
    batch, _ = roomy.schedule()
    assert batch[0].draft_ids == [2, 3, 4] and step_tokens(batch) == 4  # what followed "3, 4, 1" before


def test_no_drafts_for_sampled_requests_prefill_steps_or_large_batches() -> None:
    sched = scheduler(num_speculative_tokens=3, max_speculative_seqs=1)
    sampled = seq(REPEATING, SamplingParams(temperature=0.8), name="sampled")
    sched.add(sampled)
    decode_all(sched, [sampled])
    batch, _ = sched.schedule()
    assert batch[0].draft_ids == []  # a sampled token cannot verify a draft exactly
    step(sched)
    greedy = seq(REPEATING, name="greedy")
    sched.add(greedy)
    batch, _ = sched.schedule()
    assert greedy.num_new_tokens > 1 and all(s.draft_ids == [] for s in batch)  # a prefill joined the step
    step(sched)
    batch, _ = sched.schedule()
    assert len(batch) == 2 and all(s.draft_ids == [] for s in batch)  # more sequences than max_speculative_seqs


def test_when_blocks_run_out_the_latest_admitted_sequence_is_preempted_to_the_front() -> None:
    sched = scheduler(num_blocks=4)
    first, second = seq(list(range(8)), name="first"), seq(list(range(50, 58)), name="second")
    sched.add(first)
    sched.add(second)
    step(sched)  # two blocks each: the pool is full, both need a third block to decode
    batch = step(sched)
    assert [s.request_id for s in batch] == ["first"] and list(sched.waiting) == [second]
    assert second.status is SequenceStatus.WAITING and second.block_table == [] and sched.num_preemptions == 1


def test_a_full_waiting_queue_refuses_and_expired_requests_finish_as_timeouts() -> None:
    sched = scheduler(max_num_seqs=1, max_waiting=2)
    for i in range(3):  # one takes the free running slot, two wait
        sched.add(seq([1, 2], name=str(i)))
    with pytest.raises(EngineOverloadedError, match="3 requests already waiting|limit 2"):
        sched.add(seq([1, 2], name="refused"))
    late = sched.waiting[-1]
    late.deadline = time.monotonic() - 1
    _, timed_out = sched.schedule()
    assert timed_out == [late] and late.finish_reason == "timeout" and late not in sched.waiting
