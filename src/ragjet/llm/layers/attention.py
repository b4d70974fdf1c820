"""Attention over a paged KV cache: the one place where sequences of a batch meet the block pool.

Tokens of all sequences in a step arrive flattened, shape (T, H, D). Each sequence b owns
``q_lens[b]`` of them (its new tokens) and has ``context_lens[b]`` tokens in total once they are
written, so a prefill with a cached prefix, a decode step and a speculative verify step are the same
computation: new queries attend causally to everything the sequence has, read through its block table.

Everything a layer needs as a number (query counts, context lengths, their maximum) comes from host lists in
the metadata, never from its device tensors: on CUDA reading a device value back stalls the host until the
GPU has caught up, once per layer, and a step captured in a CUDA graph may read nothing back at all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.kernels import triton_attention

# Steps whose sequences bring at most this many new tokens each (decode: 1; a speculative verify step: 1 + the
# draft) attend through the fused CPU kernel; longer ones (prefills) through the gather + SDPA below,
# whose matrix products win once there are many queries per key.
KERNEL_MAX_QUERIES = 8


@dataclass(slots=True)
class PagedIndex:
    """What every layer of a step gathers and masks with; depends only on the metadata and block size."""

    slots: torch.Tensor  # (B, L) int64 flat cache slot of each sequence's context positions 0..L-1
    # (B, 1, Lq, L) additive, 0 where a query may see a key and -inf elsewhere, in the queries' dtype (made once
    # a step: SDPA would convert a bool mask in every layer); None when every key is visible.
    mask: torch.Tensor | None
    rows: torch.Tensor  # (T,) padded row (sequence) of every flattened token
    cols: torch.Tensor  # (T,) padded column (query index within its sequence) of every flattened token


@dataclass(slots=True)
class AttentionMetadata:
    q_lens: list[int]  # new tokens per sequence, in the order they are flattened
    context_lens: torch.Tensor  # (B,) int64 tokens per sequence after this step's tokens are written
    slot_mapping: torch.Tensor  # (T,) int64 flat cache slot (block * block_size + offset) per new token
    block_tables: torch.Tensor  # (B, max_blocks) int64, padded with 0 past a sequence's last block
    # Per sequence: it starts at position 0 (a prefill with nothing cached), so attention needs only this step's
    # keys. None: no sequence does.
    fresh_seqs: list[bool] | None = None
    # Built by the first layer of a step and reused by the others: make new metadata for every step.
    paged_index: PagedIndex | None = None
    query_starts: torch.Tensor | None = None  # (B + 1,) int64 offsets of each sequence's tokens, for the kernels
    plan: StepPlan | None = None
    # context_lens on the host, what layers size things with. The model runner passes it; other callers may
    # leave it out and it is read from context_lens once, here.
    host_context_lens: list[int] = field(default_factory=list)
    # (T,) int64 absolute position of every new token, set only when some sequence's new tokens are not its last
    # q_len positions (a blend step computes the glue between imported chunks); `gap_seqs` (B,) says which. Those
    # sequences attend through the gather + masked SDPA path, the one that masks by explicit positions.
    query_positions: torch.Tensor | None = None
    gap_seqs: list[bool] | None = None

    def __post_init__(self) -> None:
        if not self.host_context_lens:
            self.host_context_lens = self.context_lens.tolist()

    @property
    def num_seqs(self) -> int:
        return len(self.q_lens)

    @property
    def max_context_len(self) -> int:
        return max(self.host_context_lens)

    @property
    def fresh(self) -> bool:
        """Every sequence starts at position 0."""
        return self.fresh_seqs is not None and all(self.fresh_seqs)

    @property
    def is_decode(self) -> bool:
        """Every sequence brings exactly one new token (T == B)."""
        return max(self.q_lens) == 1


@dataclass(slots=True)
class StepPlan:
    """How a step's sequences attend, in parts that each take their fastest path.

    Fresh prompts (nothing cached) attend causally over their own keys. Sequences with history read the
    pool; on the CPU in two groups: few queries each (decodes, verify steps: the fused kernel, or the
    one-query path) and many (prefill chunks and cache-hit prefills: gather + masked SDPA), so a decode
    never pads to a long prompt's query count. The Triton kernel (CUDA) takes any mix in one launch. Blend
    steps' sequences that compute scattered positions are a part of their own, masked by those positions.
    """

    # Every sequence takes the same path: the step attends in one call, with no copies (and builds no tensors,
    # so a decode step can be captured in a CUDA graph).
    is_whole: bool
    fresh_spans: list[tuple[int, int]]  # flattened token range of each fresh prompt
    pool_parts: list[tuple[torch.Tensor, AttentionMetadata]]  # (T_part,) flattened rows, those sequences alone


def plan_step(meta: AttentionMetadata, split_by_queries: bool) -> StepPlan:
    """``split_by_queries``: sequences with few and many queries read the pool by different paths."""
    fresh = meta.fresh_seqs or [False] * meta.num_seqs
    gaps = meta.gap_seqs or [False] * meta.num_seqs
    pooled = [b for b in range(meta.num_seqs) if not fresh[b] and not gaps[b]]
    groups = [pooled]
    if split_by_queries:
        groups = [[b for b in pooled if meta.q_lens[b] <= KERNEL_MAX_QUERIES],
                  [b for b in pooled if meta.q_lens[b] > KERNEL_MAX_QUERIES]]  # fmt: skip
    groups = [chosen for chosen in [*groups, [b for b in range(meta.num_seqs) if gaps[b]]] if chosen]
    if len(groups) == 1 and len(groups[0]) == meta.num_seqs:
        return StepPlan(is_whole=True, fresh_spans=[], pool_parts=[])
    starts = [0, *itertools.accumulate(meta.q_lens)]
    spans = [(starts[b], starts[b + 1]) for b, is_fresh in enumerate(fresh) if is_fresh]
    return StepPlan(is_whole=False, fresh_spans=spans, pool_parts=[_pool_part(meta, g, starts) for g in groups])


def _pool_part(meta: AttentionMetadata, chosen: list[int], starts: list[int]) -> tuple[torch.Tensor, AttentionMetadata]:
    rows = [row for b in chosen for row in range(starts[b], starts[b + 1])]
    index, rows_t = to_device([chosen, rows], meta.context_lens.device)
    has_gaps = meta.gap_seqs is not None and meta.gap_seqs[chosen[0]]  # a part is all gap sequences or none
    part = AttentionMetadata(
        q_lens=[meta.q_lens[b] for b in chosen],
        context_lens=meta.context_lens.index_select(0, index),
        slot_mapping=meta.slot_mapping.new_empty(0),
        block_tables=meta.block_tables.index_select(0, index),
        host_context_lens=[meta.host_context_lens[b] for b in chosen],
        query_positions=meta.query_positions.index_select(0, rows_t) if has_gaps else None,  # type: ignore[union-attr]
        gap_seqs=[True] * len(chosen) if has_gaps else None,
    )
    return rows_t, part


def to_device(values: list[list[int]], device: torch.device) -> list[torch.Tensor]:
    """Host int lists as int64 tensors on ``device``, in one copy (views of one buffer).

    On CUDA the buffer is pinned and copied with ``non_blocking``: a copy from pageable memory blocks the host
    until it is done. On the CPU they are plain tensors.
    """
    flat = torch.tensor(list(itertools.chain.from_iterable(values)), dtype=torch.long)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        flat = flat.to(device)
    return list(flat.split([len(v) for v in values]))


def query_starts(meta: AttentionMetadata) -> torch.Tensor:
    """(B + 1,) offsets of each sequence's flattened tokens, made once a step when the caller gave none."""
    if meta.query_starts is None:
        meta.query_starts = to_device([[0, *itertools.accumulate(meta.q_lens)]], meta.context_lens.device)[0]
    return meta.query_starts


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """One sequence's tokens attending causally to each other: q (L, Hq, D), k and v (L, Hkv, D) -> (L, Hq, D).

    The inputs get a batch axis: CPU SDPA takes its flash kernel for 4-D tensors only and the math path (full
    score matrices) for 3-D ones, ~10x slower for a 500-token prompt.
    """
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
        is_causal=True, scale=scale, enable_gqa=True,
    )  # (1, Hq, L, D)  # fmt: skip
    return out[0].transpose(0, 1)


def _padded_query_index(q_lens: torch.Tensor, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row/column of every flattened token in a (B, max_q) padded layout; ``num_tokens`` is sum(q_lens)
    (given, so that repeat_interleave need not read it back)."""
    rows = torch.repeat_interleave(torch.arange(len(q_lens), device=q_lens.device), q_lens, output_size=num_tokens)
    starts = torch.cumsum(q_lens, 0) - q_lens
    cols = torch.arange(num_tokens, device=q_lens.device) - starts[rows]
    return rows, cols


def build_paged_index(meta: AttentionMetadata, block_size: int, dtype: torch.dtype) -> PagedIndex:
    """Gather slots, padded query layout and visibility mask (in ``dtype``) for a step (see ``PagedIndex``)."""
    device = meta.context_lens.device
    max_q, max_ctx = max(meta.q_lens), meta.max_context_len
    pos = torch.arange(max_ctx, device=device)  # (L,)
    slots = meta.block_tables[:, pos // block_size] * block_size + pos % block_size  # (B, L)
    (q_lens,) = to_device([meta.q_lens], device)
    rows, cols = _padded_query_index(q_lens, sum(meta.q_lens))
    if meta.is_decode and meta.num_seqs == 1:  # one query at the end of its only sequence sees everything
        return PagedIndex(slots=slots, mask=None, rows=rows, cols=cols)
    # Query i of sequence b sits at absolute position ctx_b - q_len_b + i (unless given) and sees keys up to it.
    q_pos = (meta.context_lens - q_lens)[:, None] + torch.arange(max_q, device=device)  # (B, Lq)
    if meta.query_positions is not None:
        q_pos[rows, cols] = meta.query_positions
    visible = pos[None, None, :] <= q_pos[:, :, None]  # (B, Lq, L)
    visible &= pos[None, None, :] < meta.context_lens[:, None, None]
    mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))
    return PagedIndex(slots=slots, mask=mask[:, None], rows=rows, cols=cols)  # mask (B, 1, Lq, L)


def _gather(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """cache: (num_blocks, block_size, Hkv, D), slots: (B, L) -> (B, Hkv, L, D).

    index_select over a flat index is ~2.5x faster on CPU than advanced indexing with a 2-D one.
    """
    num_kv_heads, head_dim = cache.shape[2:]
    rows = cache.view(-1, num_kv_heads, head_dim).index_select(0, slots.view(-1))  # (B * L, Hkv, D)
    return rows.view(*slots.shape, num_kv_heads, head_dim).transpose(1, 2)


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """Paged attention: on CUDA the Triton kernel, on the CPU the fused kernel for few queries, else gather
    each sequence's keys through its block table and make one SDPA call.

    q: (T, Hq, D); k_cache/v_cache: (num_blocks, block_size, Hkv, D). Returns (T, Hq, D).
    """
    block_size, num_kv_heads, head_dim = k_cache.shape[1:]
    gaps = meta.query_positions is not None
    if triton_attention.usable(q) and not gaps:  # reads the pool in place, whatever the query counts
        return triton_attention.paged_attention(
            q, k_cache, v_cache, meta.block_tables, meta.context_lens, query_starts(meta), max(meta.q_lens), scale
        )
    if max(meta.q_lens) <= KERNEL_MAX_QUERIES and cpu_kernels.usable(q) and not gaps:  # one pass, no copies
        return torch.ops.ragjet_cpu.paged_attention(
            q, k_cache, v_cache, meta.block_tables, meta.context_lens, query_starts(meta), scale
        )
    if meta.paged_index is None:
        meta.paged_index = build_paged_index(meta, block_size, q.dtype)
    index = meta.paged_index
    k, v = _gather(k_cache, index.slots), _gather(v_cache, index.slots)  # (B, Hkv, L, D) each
    if meta.is_decode:
        # One query per sequence: fold each KV head's query group into the query axis, (B, Hkv, G, D),
        # which is plain (non-GQA) SDPA; CPU SDPA with enable_gqa is ~5x slower in bf16 at one query.
        group_q = q.view(meta.num_seqs, num_kv_heads, -1, head_dim)  # (B, Hkv, G, D)
        out = F.scaled_dot_product_attention(group_q, k, v, attn_mask=index.mask, scale=scale)  # (B, Hkv, G, D)
        return out.reshape(q.shape)  # (T, Hq, D)

    if meta.num_seqs == 1:  # nothing to pad
        q_pad = q[None]  # (1, Lq, Hq, D)
    else:
        q_pad = q.new_zeros(meta.num_seqs, max(meta.q_lens), q.shape[1], head_dim)  # (B, Lq, Hq, D)
        q_pad[index.rows, index.cols] = q
    out = F.scaled_dot_product_attention(
        q_pad.transpose(1, 2),  # (B, Hq, Lq, D)
        k,
        v,
        attn_mask=index.mask,  # (B, 1, Lq, L)
        scale=scale,
        enable_gqa=True,
    )  # (B, Hq, Lq, D)
    if meta.num_seqs == 1:
        return out[0].transpose(0, 1)  # (T, Hq, D)
    return out.transpose(1, 2)[index.rows, index.cols]  # (T, Hq, D)


class Attention(nn.Module):
    """Writes this step's K/V into the layer's cache slots, then attends through the block tables.

    The model runner assigns ``k_cache``/``v_cache`` (views into one preallocated pool). Without a
    cache (a plain forward over whole prompts, used by tests and scoring) attention runs causally over
    each sequence's own new tokens.
    """

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim, self.scale = num_heads, num_kv_heads, head_dim, scale
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        # q: (T, Hq, D); k, v: (T, Hkv, D)
        if self.k_cache is None or self.v_cache is None:
            return self._uncached(q, k, v, meta)
        # index_copy_ rather than index assignment: the same write, without advanced-indexing overhead.
        self.k_cache.view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, meta.slot_mapping, k)
        self.v_cache.view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, meta.slot_mapping, v)
        if meta.fresh:  # causal attention over each prompt's own keys: no gather, no mask (~1.5x faster)
            return self._uncached(q, k, v, meta)
        if meta.plan is None:
            meta.plan = plan_step(meta, split_by_queries=not triton_attention.usable(q))
        plan = meta.plan
        if plan.is_whole:
            return paged_attention(q, self.k_cache, self.v_cache, meta, self.scale)
        out = torch.empty_like(q)
        for start, end in plan.fresh_spans:
            out[start:end] = causal_attention(q[start:end], k[start:end], v[start:end], self.scale)
        for rows, part in plan.pool_parts:
            out.index_copy_(0, rows, paged_attention(q.index_select(0, rows), self.k_cache, self.v_cache, part,
                                                     self.scale))  # fmt: skip
        return out

    def _uncached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        if meta.is_decode:  # every sequence is one token that sees only itself: softmax weight exactly 1
            return v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)  # (T, Hq, D)
        parts = zip(q.split(meta.q_lens), k.split(meta.q_lens), v.split(meta.q_lens), strict=True)
        return torch.cat([causal_attention(qs, ks, vs, self.scale) for qs, ks, vs in parts])


def uncached_metadata(q_lens: list[int], device: torch.device) -> AttentionMetadata:
    """Metadata for a cache-free forward over whole sequences (no slots, no block tables)."""
    empty = torch.empty(0, dtype=torch.long, device=device)
    lens = torch.tensor(q_lens, dtype=torch.long, device=device)
    return AttentionMetadata(
        q_lens=q_lens, context_lens=lens, slot_mapping=empty, block_tables=empty, fresh_seqs=[True] * len(q_lens),
        host_context_lens=q_lens,
    )  # fmt: skip
