"""Sentence vectors from token states: the mean over real tokens, L2-normalised (sentence-transformers' head).

One definition for both backends: the torch embedder calls `mean_pool_normalize` after the encoder, and the
ONNX export traces `SentenceHead`, so the exported graph ends in the same pooling and returns unit vectors.
"""

from __future__ import annotations

import torch
from torch import nn

from ragjet.embed.bert import BertEncoder


def mean_pool_normalize(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, d) token states and (B, N) 0/1 mask -> (B, d) float32 unit vectors."""
    weights = mask.unsqueeze(-1).float()  # (B, N, 1)
    pooled = (states.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
    return nn.functional.normalize(pooled, dim=-1)


class SentenceHead(nn.Module):
    """Encoder plus pooling as one module: what the ONNX export traces."""

    def __init__(self, encoder: BertEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pool_normalize(self.encoder(input_ids, attention_mask), attention_mask)
