"""BlockAllocator on its own (no model, no torch): reference counts, prefix hits, eviction order, failed steps."""

from __future__ import annotations

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.sampling_params import SamplingParams


def seq(token_ids: list[int]) -> Sequence:
    return Sequence("r", token_ids, len(token_ids), SamplingParams(), None, max_len=1000)  # type: ignore[arg-type]


def test_sequences_sharing_a_prefix_share_its_blocks_until_both_end() -> None:
    allocator = BlockAllocator(num_blocks=8, block_size=4)
    first, second = seq(list(range(10))), seq([*range(8), 50, 51, 52])
    allocator.allocate(first)
    allocator.allocate(second)
    assert second.block_table[:2] == first.block_table[:2] and second.num_cached_tokens == 8
    assert allocator.num_free_blocks == 8 - 3 - 1
    allocator.free_sequence(first)
    assert allocator.num_free_blocks == 8 - 3  # the shared blocks stay with the second sequence
    allocator.free_sequence(second)
    assert allocator.num_free_blocks == 8


def test_a_freed_prefix_survives_until_every_less_recently_freed_block_is_reused() -> None:
    allocator = BlockAllocator(num_blocks=6, block_size=4)
    prefix = seq(list(range(9)))  # two full blocks and one partial
    allocator.allocate(prefix)
    allocator.free_sequence(prefix)
    filler = seq([100] * 12)  # three fresh blocks: the never-used ones go first
    allocator.allocate(filler)
    again = seq(list(range(9)))
    allocator.allocate(again)
    assert again.num_cached_tokens == 8
    allocator.free_sequence(again)
    allocator.free_sequence(filler)
    evicting = seq([200] * 24)  # all six blocks: the cached prefix is recycled too
    allocator.allocate(evicting)
    allocator.free_sequence(evicting)
    last = seq(list(range(9)))
    allocator.allocate(last)
    assert last.num_cached_tokens == 0


def test_blocks_of_a_failed_step_are_forgotten_and_those_of_a_run_step_kept() -> None:
    allocator = BlockAllocator(num_blocks=8, block_size=4)
    failed = seq(list(range(9)))
    allocator.allocate(failed)
    allocator.forget_uncomputed()  # its forward pass raised
    allocator.free_sequence(failed)
    ran = seq(list(range(9)))
    allocator.allocate(ran)
    assert ran.num_cached_tokens == 0
    allocator.mark_computed()
    allocator.free_sequence(ran)
    hit = seq(list(range(9)))
    allocator.allocate(hit)
    assert hit.num_cached_tokens == 8
