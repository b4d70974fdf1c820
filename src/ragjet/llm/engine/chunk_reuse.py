"""Blend mode: a prompt's retrieved chunks take their K/V from the chunk cache instead of being prefilled.

At admission a sequence whose prompt carries chunk spans is planned: each chunk past the prefix-cache hit
that the chunk cache holds is *imported* (its K/V copied into the sequence's blocks, keys re-rotated to the
chunk's new position), and only the rest is computed, in one step: the glue between chunks (system prompt,
source headers, the question) and the first ``recompute_tokens`` of every imported chunk. Those tokens
attend to everything before them, imported K/V included, and overwrite their own imported K/V as each layer
runs; that is the selective recompute that restores cross-chunk attention, where it matters most:

- an imported chunk was computed after other text than the one it now follows; its first tokens, which had
  only that text to attend to, deviate most (the observation behind EPIC's recompute-the-chunk-start), and
- every glue token is fresh, so the question attends to all chunks, and each source header to its chunk.

Why not CacheBlend's per-layer selection of the ~15% of tokens whose K/V deviates most: choosing them needs
every token's K/V of the first layer recomputed first, and then a layer-by-layer shrinking query set; with
static positions the step is an ordinary forward over a known set of positions that every attention path
can serve. The glue is ~10-20% of a RAG prompt here (headers and question), close to CacheBlend's budget.

Blocks holding imported K/V never enter the prefix cache: that cache promises exact K/V. A chunk the cache
lacks is computed in place and exported into the cache once the prompt is done ("filled at first use").
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragjet.llm.engine.chunk_cache import ChunkKV, ChunkKVCache
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.segments import ChunkSpan


@dataclass(frozen=True, slots=True)
class ChunkImport:
    """Write ``entry``'s K/V for tokens [span.start + skip, span.end) of the sequence."""

    span: ChunkSpan
    entry: ChunkKV
    skip: int  # leading tokens of the chunk recomputed instead


@dataclass(slots=True)
class ReusePlan:
    imports: list[ChunkImport]
    compute_positions: list[int]  # what the step computes, ascending; the prompt's last token is always in it
    exports: list[ChunkSpan]  # chunks the cache lacks: stored once the prompt is computed


def plan_reuse(seq: Sequence, cache: ChunkKVCache, recompute_tokens: int) -> ReusePlan:
    """Imports for every cached chunk past the sequence's computed prefix, and what is left to compute."""
    last = seq.num_tokens - 1
    imports, exports, imported = [], [], set()
    for span in seq.chunk_spans:
        tokens = seq.token_ids[span.start : span.end]
        past_prefix = span.start >= seq.num_computed_tokens
        entry = cache.get(tokens) if past_prefix else None
        if entry is None:
            if not cache.contains(tokens):
                exports.append(span)
            continue
        skip = min(recompute_tokens, span.num_tokens)
        kept = [p for p in range(span.start + skip, span.end) if p != last]
        if kept:
            imports.append(ChunkImport(span, entry, skip))
            imported.update(kept)
    compute = [p for p in range(seq.num_computed_tokens, seq.num_tokens) if p not in imported]
    return ReusePlan(imports, compute, exports)


class ChunkReuse:
    """The scheduler's side of blend mode: plans each admitted sequence within the step's token budget."""

    def __init__(self, cache: ChunkKVCache, recompute_tokens: int, block_size: int):
        self.cache, self.recompute_tokens, self.block_size = cache, recompute_tokens, block_size

    def admit(self, seq: Sequence, budget: int) -> None:
        """Set the sequence's imports and compute positions, or leave it to an ordinary (chunked) prefill when
        nothing is cached or the positions to compute do not fit this step's budget."""
        seq.pending_imports, seq.compute_positions = [], []
        plan = plan_reuse(seq, self.cache, self.recompute_tokens)
        seq.export_spans = plan.exports
        if not plan.imports or len(plan.compute_positions) > budget:
            return
        seq.pending_imports, seq.compute_positions = plan.imports, plan.compute_positions
        # Only the full blocks before the first imported token hold exact K/V: the rest stays out of the prefix cache.
        first = min(i.span.start + i.skip for i in plan.imports)
        del seq.block_hashes[first // self.block_size :]
        seq.num_reused_tokens = seq.num_tokens - seq.num_computed_tokens - len(plan.compute_positions)
