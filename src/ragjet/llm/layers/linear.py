"""Weight-only int8 linear layer: int8 weights with one scale per output channel, activations unquantised.

Batch-1 decode reads every weight once per token, so halving the bytes of a bf16 weight (or quartering
an fp32 one) is what makes it faster; activations stay in the compute dtype, so there is no activation
calibration and the only error is the weight rounding (at most half a step of ``max|w_row| / 127``).
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
