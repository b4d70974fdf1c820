"""Weight-only quantised linear layers: activations stay in the compute dtype, only weights are rounded.

Batch-1 decode reads every weight once per token, so fewer weight bytes is what makes it faster; with
activations unquantised there is no calibration and the only error is the weight rounding.

- int8: one scale per output channel (error at most half a step of ``max|w_row| / 127``).
- int4: one scale and zero point per group of 32 inputs (asymmetric min/max). A llama.cpp Q4_1 tensor is
  exactly such a grid (``d * q + m`` per block of 32), so re-quantising its dequantised values recovers
  it, up to rounding the scale and zero point to bf16. CPU only (``torch._weight_int4pack_mm_for_cpu``),
  where it halves the bytes of int8 and, measured on SmolLM2-135M's 120 layer linears at one token,
  takes 12 ms against int8's 35 ms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Devices with a fused int8-weight GEMM (dequantises in registers); elsewhere (CUDA) we dequantise first.
_INT8PACK_DEVICES = frozenset({"cpu", "mps"})


def quantize_int8(weight: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel quantisation of a (out, in) weight.

    Returns (int8 (out, in), scales (out,) in ``scale_dtype``) with ``weight ~= q * scales[:, None]``.
    The scales are rounded to ``scale_dtype`` before the weights are divided by them, so the int8
    values are chosen for the scale the matmul will actually use.
    """
    if weight.dim() != 2:
        raise ValueError(f"quantize_int8: expected a 2-D (out, in) weight, got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny).to(scale_dtype)
    q = torch.round(w / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def int8_linear(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x: (T, in) float, weight: (out, in) int8, scales: (out,) in x's dtype -> (T, out) in x's dtype."""
    if x.device.type in _INT8PACK_DEVICES:
        return torch._weight_int8pack_mm(x, weight, scales)
    return dequantized_linear(x, weight, scales)


def dequantized_linear(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The portable path (CUDA): a float copy of the weight per call, so int8 there saves memory, not time."""
    return F.linear(x, weight.to(x.dtype)) * scales


class Int8WeightOnlyLinear(nn.Module):
    """``y = x @ (q * scales[:, None]).T + bias`` with x in the compute dtype (the scales' dtype).

    On CPU the compute dtype should be bf16: ``torch._weight_int8pack_mm`` has a vectorised bf16 kernel
    (a 576x1536 GEMV in ~12 us vs ~45 us dense bf16) but only a slow reference loop for fp32 inputs.
    """

    weight: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)  # (out, in) int8
        self.register_buffer("scales", scales)  # (out,) compute dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(scales.dtype))

    @classmethod
    def from_float(
        cls, weight: torch.Tensor, bias: torch.Tensor | None, compute_dtype: torch.dtype
    ) -> Int8WeightOnlyLinear:
        """Quantise a float (out, in) weight; ``bias`` (out,) is kept unquantised in ``compute_dtype``."""
        q, scales = quantize_int8(weight, compute_dtype)
        return cls(q, scales, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the compute dtype -> (T, out) in the same dtype."""
        out = int8_linear(x, self.weight, self.scales)
        return out if self.bias is None else out + self.bias

    def dequantize(self) -> torch.Tensor:
        """The (out, in) weight this layer multiplies by, in the compute dtype (for tests and embeddings)."""
        return self.weight.to(self.scales.dtype) * self.scales[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.scales.dtype}"


class Int8Embedding(nn.Module):
    """Token embedding that reads the rows of a tied int8 LM head, so both share one int8 table."""

    def __init__(self, head: Int8WeightOnlyLinear):
        super().__init__()
        self.head = head

    @property
    def weight(self) -> torch.Tensor:
        """The shared (vocab, hidden) int8 table (the LM head's weight)."""
        return self.head.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (T,) int64 -> (T, hidden) in the compute dtype."""
        rows = self.head.weight[input_ids].to(self.head.scales.dtype)  # (T, hidden)
        return rows * self.head.scales[input_ids, None]


INT4_GROUP_SIZE = 32  # inputs per scale/zero pair; llama.cpp's Q4_0/Q4_1 block size


def quantize_int4(weight: torch.Tensor, group_size: int, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric min/max quantisation of a (out, in) weight per group of ``group_size`` inputs.

    Returns (q (out, in) int32 in 0..15, scales_and_zeros (in / group_size, out, 2) in ``scale_dtype``)
    with ``weight ~= (q - 8) * scale + zero`` per group, the layout ``torch._weight_int4pack_mm_for_cpu``
    reads. Scale and zero are rounded to ``scale_dtype`` before q is chosen for them.
    """
    if weight.dim() != 2 or weight.shape[1] % group_size:
        raise ValueError(
            f"quantize_int4: expected a 2-D (out, in) weight with in divisible by {group_size}, "
            f"got shape {tuple(weight.shape)}"
        )
    out_features, in_features = weight.shape
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)  # (N, G, g)
    low, high = w.amin(dim=-1), w.amax(dim=-1)  # (N, G)
    scales = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny).to(scale_dtype).float()
    zeros = (low + 8 * scales).to(scale_dtype).float()
    q = torch.round((w - zeros[..., None]) / scales[..., None] + 8).clamp(0, 15).to(torch.int32)
    scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).to(scale_dtype)  # (G, N, 2)
    return q.reshape(out_features, in_features), scales_and_zeros.contiguous()


class Int4WeightOnlyLinear(nn.Module):
    """``y = x @ W.T + bias`` with W held as packed int4 groups (see ``quantize_int4``); CPU, bf16 x."""

    weight: torch.Tensor
    scales_and_zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, bias: torch.Tensor | None, group_size: int
    ):
        super().__init__()
        self.group_size = group_size
        self.in_features = scales_and_zeros.shape[0] * group_size
        self.out_features = scales_and_zeros.shape[1]
        self.register_buffer("weight", packed)  # the kernel's own packed uint8 layout
        self.register_buffer("scales_and_zeros", scales_and_zeros)  # (in / group_size, out, 2) compute dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(scales_and_zeros.dtype))

    @classmethod
    def from_float(
        cls, weight: torch.Tensor, bias: torch.Tensor | None, compute_dtype: torch.dtype,
        group_size: int = INT4_GROUP_SIZE,
    ) -> Int4WeightOnlyLinear:  # fmt: skip
        """Quantise a float (out, in) CPU weight; ``bias`` (out,) is kept unquantised in ``compute_dtype``."""
        q, scales_and_zeros = quantize_int4(weight, group_size, compute_dtype)
        packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
        return cls(packed, scales_and_zeros, bias, group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the compute dtype -> (T, out) in the same dtype."""
        out = torch._weight_int4pack_mm_for_cpu(x, self.weight, self.group_size, self.scales_and_zeros)
        return out if self.bias is None else out + self.bias

    def dequantize(self) -> torch.Tensor:
        """The (out, in) weight this layer multiplies by, in the compute dtype (for tests): W.T = I @ W.T."""
        eye = torch.eye(self.in_features, dtype=self.scales_and_zeros.dtype, device=self.weight.device)
        return torch._weight_int4pack_mm_for_cpu(eye, self.weight, self.group_size, self.scales_and_zeros).T

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"dtype={self.scales_and_zeros.dtype}")  # fmt: skip
