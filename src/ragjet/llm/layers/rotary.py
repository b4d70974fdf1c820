"""Rotary position embedding (rotate-half layout, as HF Llama/Qwen checkpoints use) with RoPE scaling.

cos/sin for every position are computed once into a cache; the model gathers the rows of this step's
``positions`` once per forward (not once per layer), so flattened tokens of many sequences at arbitrary
positions cost the same as one sequence, and each layer's rotation is three element-wise ops.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ragjet.llm.kernels import cpu as cpu_kernels


def default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """(head_dim / 2,) float32 rotation frequencies theta^(-2i/d)."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    # Llama 3.1: long wavelengths are interpolated by `factor`, short ones kept, the band between blended.
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    smooth = ((old_len / wavelen - low) / (high - low)).clamp(0, 1)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    kept_or_blended = torch.where(wavelen < old_len / high, inv_freq, blended)
    return torch.where(wavelen > old_len / low, inv_freq / factor, kept_or_blended)


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn_inv_freq(
    head_dim: int, theta: float, scaling: dict[str, Any], max_positions: int
) -> tuple[torch.Tensor, float]:
    """YaRN: per-frequency blend of interpolation and extrapolation, plus a cos/sin magnitude factor."""
    factor = scaling["factor"]
    old_len = scaling.get("original_max_position_embeddings") or max_positions
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def correction_dim(num_rotations: float) -> float:
        return head_dim * math.log(old_len / (num_rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    high = high + 0.001 if low == high else high
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = default_inv_freq(head_dim, theta)
    inv_freq = extrapolation / factor * ramp + extrapolation * (1 - ramp)

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    return inv_freq, float(attention_factor)


def rope_frequencies(
    head_dim: int, theta: float, scaling: dict[str, Any] | None, max_positions: int
) -> tuple[torch.Tensor, float, int]:
    """(inv_freq (head_dim/2,) float32, cos/sin magnitude factor, positions to cache) for a RoPE config.

    Dynamic NTK is applied once for the longest supported length (as vLLM does) rather than per
    sequence length: keys already in the paged cache must not change their rotation later.
    """
    rope_type = scaling["rope_type"] if scaling else "default"
    if rope_type == "default" or scaling is None:
        return default_inv_freq(head_dim, theta), 1.0, max_positions
    if rope_type == "linear":
        return default_inv_freq(head_dim, theta) / scaling["factor"], 1.0, max_positions
    if rope_type == "llama3":
        return _llama3_inv_freq(default_inv_freq(head_dim, theta), scaling), 1.0, max_positions
    if rope_type == "dynamic":
        factor = scaling["factor"]
        old_len = scaling.get("original_max_position_embeddings") or max_positions
        length = max(int(old_len * factor), max_positions)
        base = theta * ((factor * length / old_len) - (factor - 1)) ** (head_dim / (head_dim - 2))
        return default_inv_freq(head_dim, base), 1.0, length
    if rope_type == "yarn":
        inv_freq, attention_factor = _yarn_inv_freq(head_dim, theta, scaling, max_positions)
        return inv_freq, attention_factor, max_positions
    raise ValueError(f"unsupported rope scaling type {rope_type!r}")


class RotaryEmbedding(nn.Module):
    """Looks up a step's cos/sin; the cache is a buffer so it follows ``.to()`` (device and dtype)."""

    cos_sin_cache: torch.Tensor

    def __init__(self, head_dim: int, theta: float, scaling: dict[str, Any] | None, max_positions: int):
        super().__init__()
        # Built on the CPU explicitly so a model constructed on the meta device still gets real values.
        with torch.device("cpu"):
            inv_freq, magnitude, length = rope_frequencies(head_dim, theta, scaling, max_positions)
            angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (L, D/2)
            cos, sin = angles.cos() * magnitude, angles.sin() * magnitude
            # Rows (cos | cos) and (-sin | sin): rotate-half becomes x * cos + roll(x, D/2) * sin.
            cache = torch.stack([torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)], dim=1)  # (L, 2, D)
        self.register_buffer("cos_sin_cache", cache.unsqueeze(2), persistent=False)  # (L, 2, 1, D)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (T,) int64 -> (cos, sin), each (T, 1, D), for ``apply_rotary``."""
        cos, sin = self.cos_sin_cache[positions].unbind(1)  # (T, 1, D) each
        return cos.contiguous(), sin.contiguous()  # read by every layer: copied once here


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (T, H, D); cos, sin: (T, 1, D) from ``RotaryEmbedding`` -> x rotated, (T, H, D).

    Same values as HF's ``x * cos + rotate_half(x) * sin``: roll brings (x2, x1) and sin carries the sign.
    On the CPU, with the fused kernels loaded for its dtype, x is rotated in place and returned.
    """
    if cpu_kernels.usable(x) and x.stride(-1) == 1:
        torch.ops.ragjet_cpu.rotary_(x, cos, sin)
        return x
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin)
