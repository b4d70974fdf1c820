"""A quantised linear layer that switches to a dense bf16 copy of its weight for many-token steps.

Weight-only int8/int4 kernels win when a step multiplies a few rows (decode reads every weight once
per token, so fewer weight bytes is faster), but lose badly on prefill, where the matmul is compute
bound and the CPU's bf16 matrix units run dense GEMMs several times faster than the dequantising
kernels. Measured on this machine kind, a (600, 576) x (576, 3072) product: int8 weight-only 49 ms,
int4 46 ms, dense bf16 12 ms. Keeping both copies costs the dense weight's memory (2 bytes a
parameter), which is why it is a setting (``llm.dense_prefill``) rather than always on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Steps with at least this many tokens take the dense path. Measured over SmolLM2's 120 layer linears (int4 vs
# dense bf16): 8 rows 15.7 vs 26.8 ms, 16 rows 30.5 vs 26.5, 24 rows 41.4 vs 28.5, 32 rows 52.7 vs 28.7. Dense wins
# from ~14 rows; 24 keeps speculative verify steps (at most 4 sequences x 4 tokens) on the weights plain decode uses.
DENSE_MIN_ROWS = 24


class PrefillDenseLinear(nn.Module):
    """``quantized(x)`` for steps of few tokens, ``x @ dense.T + bias`` for steps of many; same result up to
    the quantisation error, which the dense copy does not have."""

    dense: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, quantized: nn.Module, dense: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.quantized = quantized  # maps (T, in) -> (T, out), bias included
        self.register_buffer("dense", dense)  # (out, in) compute dtype
        self.register_buffer("bias", bias)  # (out,) compute dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the compute dtype -> (T, out)."""
        if x.shape[0] >= DENSE_MIN_ROWS:
            return F.linear(x, self.dense, self.bias)
        return self.quantized(x)
