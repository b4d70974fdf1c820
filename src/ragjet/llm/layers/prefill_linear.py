"""A quantised linear layer that switches to a dense copy of its weight for many-row steps.

Weight-only int8/int4 kernels win when a step multiplies a few rows (decode reads every weight once
per token, so fewer weight bytes is faster), but lose badly once a step has more rows: prefills, and
decode batches of many sequences, where the CPU's matrix units run dense GEMMs several times faster
than the dequantising kernels (bf16 where it is native, fp32 elsewhere: the hardware policy decides).
Keeping both copies costs the dense weight's memory (2 bytes a parameter in bf16, 4 in fp32), which is why
it is a setting (``llm.dense_prefill``) rather than always on.

Where bf16 GEMMs are native the dense copy is held prepacked in oneDNN's blocked layout (``DenseWeight``),
as inductor's freezing pass does: ``F.linear`` reorders a plain weight into that layout on every call.
Measured over SmolLM2-135M's 120 layer linears (30 distinct layers, so weights come from memory) on an
AVX-512 CPU:

| rows | int4 | dense bf16, F.linear | dense bf16, prepacked |
| ---: | ---: | ---: | ---: |
| 1 | 5.3 ms | 23.7 ms | 16.9 ms |
| 8 | 14.3 ms | 25.4 ms | 16.1 ms |
| 12 | 20.4 ms | 24.2 ms | 16.8 ms |
| 16 | 28.0 ms | 24.7 ms | 17.3 ms |
| 300 | | 67.0 ms | 50.5 ms |

An fp32 copy is not prepacked: narrowed to AVX2, oneDNN's prepacked fp32 weight gained nothing over fp32
``F.linear`` (MKL) for a 300-row step (2.7 vs 1.9 ms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ragjet.hardware import cpu_policy

# Steps with at least this many rows take the dense path: from the table above, int4 and the prepacked dense
# weight cross between 8 and 12 rows.
DENSE_MIN_ROWS = 10
# The LM head (vocab x hidden, int8 against dense bf16 prepacked, caches flushed as a step's other weights flush
# them): 1 row 3.0 vs 3.7 ms, 4 rows 3.7 vs 4.1, 6 rows 6.1 vs 3.7, 16 rows 10.5 vs 3.6. A verify step of one
# sequence and its 3-token draft (4 rows) stays int8.
LM_HEAD_DENSE_MIN_ROWS = 5


class DenseWeight(nn.Module):
    """``x @ weight.T + bias`` for a fixed weight, prepacked for oneDNN when ``prepack`` (bf16 on a CPU with
    native bf16 GEMMs: the hardware policy's ``prepack_dense``).

    A prepacked weight is an opaque mkldnn tensor: it cannot move to another device or dtype, so build this
    after the model has its final device and dtype.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, prepack: bool = False):
        super().__init__()
        self.prepacked = prepack and weight.device.type == "cpu" and weight.dtype == torch.bfloat16
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
    quantisation error, which the dense copy does not have. The dense copy is made from the float
    ``weight`` in the hardware policy's ``dense_dtype``; inputs are converted to it and results back."""

    def __init__(
        self, quantized: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, min_rows: int = DENSE_MIN_ROWS
    ):
        super().__init__()
        policy = cpu_policy()
        dense_bias = None if bias is None else bias.detach().to(policy.dense_dtype)
        self.quantized = quantized  # maps (T, in) -> (T, out), bias included
        self.dense = DenseWeight(weight.detach().to(policy.dense_dtype), dense_bias, policy.prepack_dense)
        self.min_rows = min_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, in) in the compute dtype -> (T, out) in the same dtype."""
        if x.shape[0] < self.min_rows:
            return self.quantized(x)
        dense_dtype = self.dense.weight.dtype
        if x.dtype == dense_dtype:
            return self.dense(x)
        return self.dense(x.to(dense_dtype)).to(x.dtype)
