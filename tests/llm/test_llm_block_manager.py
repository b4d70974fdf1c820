"""BlockAllocator on its own (no model, no torch): reference counts, prefix hits, eviction order, failed steps."""

from __future__ import annotations

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.sampling_params import SamplingParams


def seq(token_ids: list[int]) -> Sequence:
    return Sequence("r", token_ids, len(token_ids), SamplingParams(), None, max_len=1000)  # type: ignore[arg-type]


def admit(allocator: BlockAllocator, sequence: Sequence) -> Sequence:
    """Allocate, and schedule the whole prompt in this step (what an unchunked prefill does)."""
    allocator.allocate(sequence)
    allocator.register_computed(sequence, sequence.num_tokens)
    return sequence


def test_sequences_sharing_a_prefix_share_its_blocks_until_both_end() -> None:
    allocator = BlockAllocator(num_blocks=8, block_size=4)
    first, second = seq(list(range(10))), seq([*range(8), 50, 51, 52])
    admit(allocator, first)
    admit(allocator, second)
    assert second.block_table[:2] == first.block_table[:2] and second.num_cached_tokens == 8
    assert allocator.num_free_blocks == 8 - 3 - 1
    allocator.free_sequence(first)
    assert allocator.num_free_blocks == 8 - 3  # the shared blocks stay with the second sequence
    allocator.free_sequence(second)
    assert allocator.num_free_blocks == 8


def test_a_freed_prefix_survives_until_every_less_recently_freed_block_is_reused() -> None:
    allocator = BlockAllocator(num_blocks=6, block_size=4)
    prefix = seq(list(range(9)))  # two full blocks and one partial
    admit(allocator, prefix)
    allocator.free_sequence(prefix)
    filler = seq([100] * 12)  # three fresh blocks: the never-used ones go first
    admit(allocator, filler)
    again = seq(list(range(9)))
    admit(allocator, again)
    assert again.num_cached_tokens == 8
    allocator.free_sequence(again)
    allocator.free_sequence(filler)
    evicting = seq([200] * 24)  # all six blocks: the cached prefix is recycled too
    admit(allocator, evicting)
    allocator.free_sequence(evicting)
    last = seq(list(range(9)))
    admit(allocator, last)
    assert last.num_cached_tokens == 0


def test_blocks_of_a_failed_step_are_forgotten_and_those_of_a_run_step_kept() -> None:
    allocator = BlockAllocator(num_blocks=8, block_size=4)
    failed = seq(list(range(9)))
    admit(allocator, failed)
    allocator.forget_uncomputed()  # its forward pass raised
    allocator.free_sequence(failed)
    ran = seq(list(range(9)))
    admit(allocator, ran)
    assert ran.num_cached_tokens == 0
    allocator.mark_computed()
    allocator.free_sequence(ran)
    hit = seq(list(range(9)))
    admit(allocator, hit)
    assert hit.num_cached_tokens == 8


def test_a_block_is_shared_only_once_a_scheduled_chunk_computes_it() -> None:
    allocator = BlockAllocator(num_blocks=16, block_size=4)
    long = seq(list(range(20)))
    allocator.allocate(long)
    allocator.register_computed(long, 6)  # a first chunk of 6 tokens: block 0 complete, block 1 not
    early = seq([*range(12), 99])
    allocator.allocate(early)
    assert early.num_cached_tokens == 4  # never the blocks whose K/V no step has computed yet
    allocator.register_computed(long, 20)
    late = seq([*range(12), 99])
    allocator.allocate(late)
    assert late.num_cached_tokens == 12
