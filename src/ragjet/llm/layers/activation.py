"""SwiGLU's gate: silu(gate) * up on the output of the fused gate/up projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SiluAndMul(nn.Module):
    def forward(self, gate_up: torch.Tensor) -> torch.Tensor:
        """gate_up: (T, 2 * I) with gate in the first half -> (T, I)."""
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
