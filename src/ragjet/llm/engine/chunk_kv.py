"""Copying one chunk's K/V between the paged pool and the chunk cache, keys re-rotated on the way in.

RoPE rotates each key's frequency pairs by an angle proportional to its position, so a key computed at
position p becomes the key at p + d by one more rotation by d (rotations compose); values carry no position.
The angles come from the model's own cos/sin table divided by its magnitude (YaRN scales cos/sin; a
re-rotation must not scale twice). Rotation runs in float32 and rounds once, into the pool's dtype.
"""

from __future__ import annotations

import torch

from ragjet.llm.engine.chunk_cache import ChunkKV
from ragjet.llm.segments import ChunkSpan


def rotate_keys(keys: torch.Tensor, cos_sin_cache: torch.Tensor, shift: int) -> torch.Tensor:
    """keys (..., D) rotated by ``shift`` positions (any sign), in float32.

    ``cos_sin_cache``: the model's (L, 2, 1, D) table (``RotaryEmbedding.cos_sin_cache``).
    """
    x = keys.float()
    if shift == 0:
        return x
    row = cos_sin_cache[abs(shift), :, 0].float() / cos_sin_cache[0, 0, 0, 0].float()  # (2, D): cos | signed sin
    cos, sin = row[0], row[1] if shift > 0 else -row[1]
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin)


def chunk_slots(block_table: list[int], start: int, end: int, block_size: int, device: torch.device) -> torch.Tensor:
    """(n,) flat pool slots of positions [start, end) of a sequence."""
    return torch.tensor([block_table[p // block_size] * block_size + p % block_size for p in range(start, end)],
                        dtype=torch.long, device=device)  # fmt: skip


def read_chunk(kv_cache: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A chunk's (keys, values), each (layers, n, Hkv, D) on the host, as the pool holds them; and their bytes.

    kv_cache: the pool, (2, layers, blocks, block_size, Hkv, D).
    """
    layers, _, _, num_kv_heads, head_dim = kv_cache.shape[1:]
    flat = kv_cache.view(2, layers, -1, num_kv_heads, head_dim)
    keys = flat[0].index_select(1, slots).cpu()
    values = flat[1].index_select(1, slots).cpu()
    return keys, values, 2 * keys.numel() * keys.element_size()


def write_chunk(
    kv_cache: torch.Tensor, entry: ChunkKV, slots: torch.Tensor, span: ChunkSpan, skip: int,
    cos_sin_cache: torch.Tensor,
) -> None:  # fmt: skip
    """Write ``entry``'s tokens [skip, n) into ``slots`` (the span's positions past ``skip``), keys rotated from the
    entry's start to the span's."""
    layers, _, _, num_kv_heads, head_dim = kv_cache.shape[1:]
    flat = kv_cache.view(2, layers, -1, num_kv_heads, head_dim)
    device, dtype = kv_cache.device, kv_cache.dtype
    keys = rotate_keys(entry.keys[:, skip:].to(device), cos_sin_cache, span.start - entry.start).to(dtype)
    flat[0].index_copy_(1, slots, keys)
    flat[1].index_copy_(1, slots, entry.values[:, skip:].to(device, dtype))
