"""Attention over a paged KV cache: the one place where sequences of a batch meet the block pool.

Tokens of all sequences in a step arrive flattened, shape (T, H, D). Each sequence b owns
``q_lens[b]`` of them (its new tokens) and has ``context_lens[b]`` tokens in total once they are
written, so a prefill with a cached prefix, a decode step and a speculative verify step are the same
computation: new queries attend causally to everything the sequence has, read through its block table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(slots=True)
class AttentionMetadata:
    q_lens: list[int]  # new tokens per sequence, in the order they are flattened
    context_lens: torch.Tensor  # (B,) int64 tokens per sequence after this step's tokens are written
    slot_mapping: torch.Tensor  # (T,) int64 flat cache slot (block * block_size + offset) per new token
    block_tables: torch.Tensor  # (B, max_blocks) int64, padded with 0 past a sequence's last block

    @property
    def num_seqs(self) -> int:
        return len(self.q_lens)


def _padded_query_index(q_lens: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row/column of every flattened token in a (B, max_q) padded layout."""
    lens = torch.tensor(q_lens, device=device)
    rows = torch.repeat_interleave(torch.arange(len(q_lens), device=device), lens)
    starts = torch.cumsum(lens, 0) - lens
    cols = torch.arange(int(lens.sum()), device=device) - starts[rows]
    return rows, cols


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """Reference paged attention: gather each sequence's keys through its block table, one SDPA call.

    q: (T, Hq, D); k_cache/v_cache: (num_blocks, block_size, Hkv, D). Returns (T, Hq, D).
    """
    device = q.device
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    num_seqs, max_q = meta.num_seqs, max(meta.q_lens)
    max_ctx = int(meta.context_lens.max())
    pos = torch.arange(max_ctx, device=device)  # (L,)
    blocks = meta.block_tables[:, pos // block_size]  # (B, L)
    slots = blocks * block_size + pos % block_size  # (B, L)
    k = k_cache.view(-1, num_kv_heads, head_dim)[slots]  # (B, L, Hkv, D)
    v = v_cache.view(-1, num_kv_heads, head_dim)[slots]  # (B, L, Hkv, D)

    rows, cols = _padded_query_index(meta.q_lens, device)
    q_pad = q.new_zeros(num_seqs, max_q, q.shape[1], head_dim)  # (B, Lq, Hq, D)
    q_pad[rows, cols] = q

    # Query i of sequence b sits at absolute position ctx_b - q_len_b + i and sees keys up to it.
    q_lens = torch.tensor(meta.q_lens, device=device)
    q_pos = (meta.context_lens - q_lens)[:, None] + torch.arange(max_q, device=device)  # (B, Lq)
    mask = pos[None, None, :] <= q_pos[:, :, None]  # (B, Lq, L)
    mask &= pos[None, None, :] < meta.context_lens[:, None, None]

    out = F.scaled_dot_product_attention(
        q_pad.transpose(1, 2),  # (B, Hq, Lq, D)
        k.transpose(1, 2),  # (B, Hkv, L, D)
        v.transpose(1, 2),
        attn_mask=mask[:, None],  # (B, 1, Lq, L)
        scale=scale,
        enable_gqa=True,
    )  # (B, Hq, Lq, D)
    return out.transpose(1, 2)[rows, cols]  # (T, Hq, D)


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
        self.k_cache.view(-1, self.num_kv_heads, self.head_dim)[meta.slot_mapping] = k
        self.v_cache.view(-1, self.num_kv_heads, self.head_dim)[meta.slot_mapping] = v
        return paged_attention(q, self.k_cache, self.v_cache, meta, self.scale)

    def _uncached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        outs = []
        for qs, ks, vs in zip(q.split(meta.q_lens), k.split(meta.q_lens), v.split(meta.q_lens), strict=True):
            o = F.scaled_dot_product_attention(
                qs.transpose(0, 1),
                ks.transpose(0, 1),
                vs.transpose(0, 1),  # (H, L, D)
                is_causal=True,
                scale=self.scale,
                enable_gqa=True,
            )
            outs.append(o.transpose(0, 1))  # (L, Hq, D)
        return torch.cat(outs)


def uncached_metadata(q_lens: list[int], device: torch.device) -> AttentionMetadata:
    """Metadata for a cache-free forward over whole sequences (no slots, no block tables)."""
    empty = torch.empty(0, dtype=torch.long, device=device)
    lens = torch.tensor(q_lens, dtype=torch.long, device=device)
    return AttentionMetadata(q_lens=q_lens, context_lens=lens, slot_mapping=empty, block_tables=empty)
