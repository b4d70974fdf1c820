"""Paged attention on CUDA as one Triton kernel: K/V read in place through the block tables.

The torch path gathers every sequence's keys out of the pool, builds a dense mask and calls SDPA with it
(which takes the math backend). This kernel reads each key block where it lies, computes the causal mask
from positions and keeps a FlashAttention-style running softmax, so nothing of size (queries x keys) is
ever stored. One program handles one sequence, one KV head and a block of that sequence's queries, for
all query heads sharing the KV head (GQA: query head h reads KV head h // group), so each key is loaded
once per group. Decode (one query), prefill over a cached prefix, chunked prefill and speculative verify
(1 + draft queries) are all the same launch: query i of a sequence with q_len new tokens and context_len
in total sits at position context_len - q_len + i and sees keys 0..that position.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the kernel runs on CPU tensors, slowly:
that is how it is tested without a GPU. The interpreter cannot multiply bf16 blocks (it stores them as
raw 16-bit integers), so there the two products take fp32 operands; on a GPU they run on bf16/fp16
tensor cores with fp32 accumulation.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the layers keep their torch paths
    triton = None

MAX_BLOCK_M = 128  # rows (query, head-in-group pairs) per program
BLOCK_N = 64  # keys per step of the running softmax
LOG2_E = 1.4426950408889634
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # read by triton.jit below, when it decorates


def available() -> bool:
    return triton is not None


def usable(q: torch.Tensor) -> bool:
    """Whether the attention layer should run this kernel on ``q``: Triton imported and a CUDA tensor."""
    return triton is not None and q.is_cuda


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    query_starts: torch.Tensor,
    max_q_len: int,
    scale: float,
) -> torch.Tensor:
    """Causal attention of each sequence's new queries over its whole context, read through the pool.

    q: (T, Hq, D), sequence b's queries at rows query_starts[b]:query_starts[b + 1]; k_cache/v_cache:
    (num_blocks, block_size, Hkv, D); block_tables: (B, max_blocks) int, valid up to each sequence's last
    block; context_lens: (B,) int, tokens per sequence including this step's (already written to the
    cache); query_starts: (B + 1,) int; max_q_len: the largest q_len, a host int (it sizes the launch grid,
    so nothing is read back from the device). Returns (T, Hq, D) in q's dtype.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_blocks, block_size, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    if q.stride(-1) != 1:
        q = q.contiguous()
    out = torch.empty((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    block_m = max(16, min(MAX_BLOCK_M, triton.next_power_of_2(max_q_len * group)))
    queries_per_program = max(1, block_m // group)
    grid = (block_tables.shape[0], num_kv_heads, math.ceil(max_q_len / queries_per_program))
    _paged_attention_kernel[grid](
        q, k_cache, v_cache, out, block_tables, context_lens, query_starts,
        scale * LOG2_E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        GROUP=group, BLOCK_SIZE=block_size, HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_M=block_m, QUERIES=queries_per_program, BLOCK_N=BLOCK_N,
        DOT_FP32=q.dtype == torch.float32 or INTERPRETED,
    )  # fmt: skip
    return out


if triton is not None:

    @triton.jit
    def _paged_attention_kernel(
        q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, block_tables_ptr, context_lens_ptr, query_starts_ptr,
        scale_log2,  # softmax scale * log2(e): the running softmax uses exp2
        stride_qt, stride_qh, stride_ot, stride_oh,
        stride_kb, stride_ks, stride_kh, stride_bt,  # the caches share strides (views of one pool)
        GROUP: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr, QUERIES: tl.constexpr, BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr,
    ):  # fmt: skip
        seq, kv_head, query_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        q_start = tl.load(query_starts_ptr + seq)
        q_len = tl.load(query_starts_ptr + seq + 1) - q_start
        first_query = query_block * QUERIES
        if first_query >= q_len:  # a sequence with fewer queries than the step's longest
            return
        context_len = tl.load(context_lens_ptr + seq)

        # Row r is query first_query + r // GROUP of this sequence, for query head kv_head * GROUP + r % GROUP.
        rows = tl.arange(0, BLOCK_M)
        query = first_query + rows // GROUP
        head = kv_head * GROUP + rows % GROUP
        row_valid = (rows < QUERIES * GROUP) & (query < q_len)
        q_pos = context_len - q_len + query  # (M,) absolute position of each row's query
        dims = tl.arange(0, BLOCK_D)
        dim_valid = dims < HEAD_DIM
        q_offsets = (q_start + query)[:, None] * stride_qt + head[:, None] * stride_qh + dims[None, :]
        q = tl.load(q_ptr + q_offsets, mask=row_valid[:, None] & dim_valid[None, :], other=0.0)  # (M, D)
        if DOT_FP32:
            q = q.to(tl.float32)

        row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
        row_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        # Keys past this block's last query are invisible to all of its rows.
        num_keys = tl.minimum(context_len, context_len - q_len + first_query + QUERIES)
        for key_start in range(0, num_keys, BLOCK_N):
            keys = key_start + tl.arange(0, BLOCK_N)
            key_valid = keys < num_keys
            block = tl.load(block_tables_ptr + seq * stride_bt + keys // BLOCK_SIZE, mask=key_valid, other=0)
            kv_offsets = (block * stride_kb + (keys % BLOCK_SIZE) * stride_ks + kv_head * stride_kh)[:, None]
            kv_mask = key_valid[:, None] & dim_valid[None, :]
            k = tl.load(k_cache_ptr + kv_offsets + dims[None, :], mask=kv_mask, other=0.0)  # (N, D)
            v = tl.load(v_cache_ptr + kv_offsets + dims[None, :], mask=kv_mask, other=0.0)  # (N, D)
            if DOT_FP32:
                k, v = k.to(tl.float32), v.to(tl.float32)
            scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale_log2  # (M, N)
            visible = key_valid[None, :] & (keys[None, :] <= q_pos[:, None])
            scores = tl.where(visible, scores, float("-inf"))
            # Key 0 is visible to every row and lies in the first step, so row_max is finite from there on.
            new_max = tl.maximum(row_max, tl.max(scores, 1))
            probs = tl.exp2(scores - new_max[:, None])  # (M, N)
            rescale = tl.exp2(row_max - new_max)
            row_sum = row_sum * rescale + tl.sum(probs, 1)
            acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v, input_precision="ieee")  # (M, D)
            row_max = new_max

        out = acc / row_sum[:, None]
        out_offsets = (q_start + query)[:, None] * stride_ot + head[:, None] * stride_oh + dims[None, :]
        tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=row_valid[:, None] & dim_valid[None, :])
