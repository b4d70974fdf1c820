"""The KV block pool: fixed-size blocks, reference-counted, reused by content hash (prefix caching).

A full block is identified by the hash of its tokens chained with the previous block's hash, so two
prompts that share a system prompt and the same retrieved chunks share those blocks and their K/V is
computed once. A freed block keeps its hash and contents until it is handed out again, least recently
freed first, so a popular prefix survives between requests. No torch here: this is bookkeeping only.

A block's hash is registered in the step that computes it (a long prompt is prefilled in chunks, over
several steps), so a sequence admitted in that same step can already share it: every layer writes its
K/V before attending. Until the step's forward pass has run, those blocks are "uncomputed": if the pass
fails, their hashes are forgotten, so no later prompt is served K/V that was never written.
"""

from __future__ import annotations

from collections import OrderedDict

from ragjet.llm.engine.sequence import Sequence


class BlockAllocator:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1:
            raise ValueError(f"the KV cache needs at least one block, got {num_blocks}")
        self.num_blocks, self.block_size, self.enable_prefix_caching = num_blocks, block_size, enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}  # content hash -> block holding it
        # Free blocks, least recently freed first; an OrderedDict so that a prefix hit takes its block out of
        # the middle in O(1) (a list scan cost 100 ms a 2,000-token hit in a 65,536-block GPU pool).
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.uncomputed: list[int] = []  # registered by this step's admissions, K/V not yet written
        self.num_queries = self.num_hits = 0  # in blocks

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, seq: Sequence) -> bool:
        """Enough free blocks for the whole sequence, counting none as cached (conservative)."""
        return self.blocks_needed(seq.num_tokens) <= len(self.free)

    def allocate(self, seq: Sequence) -> None:
        """Blocks for every token of a newly admitted sequence, reusing cached full blocks of its prefix.

        The last token is always computed (its logits are needed), so only full blocks before it can hit.
        The other full blocks enter the cache once computed (``register_computed``).
        """
        assert not seq.block_table
        seq.block_hashes = self._full_block_hashes(seq.token_ids) if self.enable_prefix_caching else []
        reusable = min(len(seq.block_hashes), (seq.num_tokens - 1) // self.block_size)
        for key in seq.block_hashes[:reusable]:
            self.num_queries += 1
            block = self.cached.get(key)
            if block is None:
                break
            self._take(block)
            seq.block_table.append(block)
        hits = len(seq.block_table)
        seq.block_table += [self._fresh() for _ in range(self.blocks_needed(seq.num_tokens) - hits)]
        self.num_hits += hits
        seq.num_registered_blocks = hits
        seq.num_cached_tokens = seq.num_computed_tokens = hits * self.block_size

    def register_computed(self, seq: Sequence, num_computed_tokens: int) -> None:
        """The step being scheduled computes ``seq``'s tokens up to ``num_computed_tokens``: its full prompt
        blocks below that enter the prefix cache now (uncomputed until the step has run)."""
        upto = min(len(seq.block_hashes), num_computed_tokens // self.block_size)
        for i in range(seq.num_registered_blocks, upto):
            self._register(seq.block_table[i], seq.block_hashes[i])
            self.uncomputed.append(seq.block_table[i])
        seq.num_registered_blocks = max(seq.num_registered_blocks, upto)

    def _full_block_hashes(self, token_ids: list[int]) -> list[int]:
        """Each full block's content key: its tokens chained with the previous block's key."""
        keys: list[int] = []
        for start in range(0, len(token_ids) - self.block_size + 1, self.block_size):
            keys.append(hash((keys[-1] if keys else None, tuple(token_ids[start : start + self.block_size]))))
        return keys

    def can_append(self, seq: Sequence) -> bool:
        return len(seq.block_table) >= self.blocks_needed(seq.num_tokens) or len(self.free) > 0

    def append_slot(self, seq: Sequence) -> None:
        """Make room for the token about to be computed (a new block when the last one is full)."""
        if len(seq.block_table) < self.blocks_needed(seq.num_tokens):
            seq.block_table.append(self._fresh())

    def reserve(self, seq: Sequence, num_tokens: int) -> int:
        """Blocks for up to ``num_tokens`` positions (speculative ones) while free blocks last; how many fit.

        Blocks past the accepted tokens stay in the table and are filled as the sequence grows.
        """
        while len(seq.block_table) < self.blocks_needed(num_tokens) and self.free:
            seq.block_table.append(self._fresh())
        return min(num_tokens, len(seq.block_table) * self.block_size)

    def free_sequence(self, seq: Sequence) -> None:
        """Release a sequence's blocks, tail first, so its prefix blocks are the last to be recycled."""
        for block in reversed(seq.block_table):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free[block] = None
        seq.block_table = []
        seq.num_computed_tokens = 0

    def mark_computed(self) -> None:
        """The step's forward pass wrote the K/V of every block admitted in it."""
        self.uncomputed.clear()

    def forget_uncomputed(self) -> None:
        """The step's forward pass failed: its admitted blocks hold no valid K/V, so they must never hit."""
        for block in self.uncomputed:
            key = self.block_hash[block]
            if key is not None and self.cached.get(key) == block:
                del self.cached[key]
            self.block_hash[block] = None
        self.uncomputed.clear()

    def _take(self, block: int) -> None:
        if self.ref_counts[block] == 0:
            del self.free[block]
        self.ref_counts[block] += 1

    def _fresh(self) -> int:
        block, _ = self.free.popitem(last=False)  # least recently freed: cached prefixes live as long as possible
        old = self.block_hash[block]
        if old is not None and self.cached.get(old) == block:
            del self.cached[old]
        self.block_hash[block] = None
        self.ref_counts[block] = 1
        return block

    def _register(self, block: int, key: int) -> None:
        self.block_hash[block] = key
        self.cached.setdefault(key, block)
