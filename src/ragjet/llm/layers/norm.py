"""RMSNorm, with the residual add folded in so a decoder layer needs one call per norm.

On the CPU both are one fused kernel (kernels/cpu_kernels.cpp) when an engine has loaded it for the dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ragjet.llm.kernels import cpu as cpu_kernels


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., size) -> same shape and dtype, normalised over the last dimension."""
        if cpu_kernels.usable(x):
            return torch.ops.ragjet_cpu.add_rms_norm(x, None, self.weight, self.eps)[0]
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)

    def add_forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (norm(x + residual), x + residual): the pre-norm block's two outputs in one call."""
        if cpu_kernels.usable(x):
            return torch.ops.ragjet_cpu.add_rms_norm(x, residual, self.weight, self.eps)
        summed = x + residual
        return self.forward(summed), summed
