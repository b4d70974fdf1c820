"""A quantised linear layer that switches to a dense bf16 copy of its weight for many-row steps.

Weight-only int8/int4 kernels win when a step multiplies a few rows (decode reads every weight once
per token, so fewer weight bytes is faster), but lose badly once a step has more rows: prefills, and
decode batches of many sequences, where the CPU's bf16 matrix units run dense GEMMs several times
faster than the dequantising kernels. Keeping both copies costs the dense weight's memory (2 bytes a
parameter), which is why it is a setting (``llm.dense_prefill``) rather than always on.

On the CPU the dense copy is held prepacked in oneDNN's blocked layout (``DenseWeight``), as
inductor's freezing pass does: ``F.linear`` reorders a plain weight into that layout on every call.
Measured over SmolLM2-135M's 120 layer linears (30 distinct layers, so weights come from memory):

| rows | int4 | dense bf16, F.linear | dense bf16, prepacked |
| ---: | ---: | ---: | ---: |
| 1 | 5.3 ms | 23.7 ms | 16.9 ms |
| 8 | 14.3 ms | 25.4 ms | 16.1 ms |
| 12 | 20.4 ms | 24.2 ms | 16.8 ms |
| 16 | 28.0 ms | 24.7 ms | 17.3 ms |
| 300 | | 67.0 ms | 50.5 ms |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Steps with at least this many rows take the dense path: from the table above, int4 and the prepacked dense
# weight cross between 8 and 12 rows.
DENSE_MIN_ROWS = 10
# The LM head (vocab x hidden, int8 against dense bf16 prepacked, caches flushed as a step's other weights flush
# them): 1 row 3.0 vs 3.7 ms, 4 rows 3.7 vs 4.1, 6 rows 6.1 vs 3.7, 16 rows 10.5 vs 3.6. A verify step of one
# sequence and its 3-token draft (4 rows) stays int8.
LM_HEAD_DENSE_MIN_ROWS = 5


def _can_prepack(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()


class DenseWeight(nn.Module):
    """``x @ weight.T + bias`` for a fixed weight, prepacked for oneDNN where it can be (bf16 on the CPU).

    A prepacked weight is an opaque mkldnn tensor: it cannot move to another device or dtype, so build this
    after the model has its final device and dtype.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.prepacked = _can_prepack(weight)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight) if self.prepacked else weight
        self.register_buffer("weight", packed, persistent=False)  # (out, in)
        self.register_buffer("bias", bias, persistent=False)  # (out,) or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the weight's dtype -> (T, out)."""
        if self.prepacked:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


class PrefillDenseLinear(nn.Module):
    """``quantized(x)`` for steps of few rows, ``dense(x)`` for steps of many; same result up to the
    quantisation error, which the dense copy does not have."""

    def __init__(
        self, quantized: nn.Module, dense: torch.Tensor, bias: torch.Tensor | None, min_rows: int = DENSE_MIN_ROWS
    ):
        super().__init__()
        self.quantized = quantized  # maps (T, in) -> (T, out), bias included
        self.dense = DenseWeight(dense, bias)  # (out, in) compute dtype
        self.min_rows = min_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the compute dtype -> (T, out)."""
        if x.shape[0] >= self.min_rows:
            return self.dense(x)
        return self.quantized(x)
