"""A BERT encoder in plain PyTorch: SDPA attention with a padding mask, weights named as in HF checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, slots=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertConfig:
        if d.get("model_type", "bert") != "bert" or d.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported encoder: model_type={d.get('model_type')!r} act={d.get('hidden_act')!r}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)  # fused query/key/value: one matmul
        self.attn_out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.up = nn.Linear(c.hidden_size, c.intermediate_size)
        self.down = nn.Linear(c.intermediate_size, c.hidden_size)
        self.out_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, N, Dh)
        x = self.attn_norm(x + self.attn_out(attn.transpose(1, 2).reshape(b, n, d)))
        return self.out_norm(x + self.down(F.gelu(self.up(x))))


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, N) ids and 0/1 mask (and segment ids for a pair, else all segment 0) -> (B, N, d) token states."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        segment = self.token_type.weight[0] if token_types is None else self.token_type(token_types)
        x = self.word(input_ids) + self.position(positions) + segment
        x = self.norm(x)
        # Additive key mask (0 for real tokens, the dtype's minimum for padding), (B, 1, 1, N): as fast as a boolean
        # one in torch, and it exports to ONNX as a plain Add where a boolean mask brings NaN guards (IsNaN, Where)
        # that took a third of ONNX Runtime's forward.
        mask = (1 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask)
        return x


def load_bert_state(model: BertEncoder, weights: dict[str, torch.Tensor]) -> None:
    """Copy HF `BertModel` weights (with or without the `bert.` prefix) into our fused layout."""
    w = {k.removeprefix("bert."): v for k, v in weights.items()}
    state = {
        "word.weight": w["embeddings.word_embeddings.weight"],
        "position.weight": w["embeddings.position_embeddings.weight"],
        "token_type.weight": w["embeddings.token_type_embeddings.weight"],
        "norm.weight": w["embeddings.LayerNorm.weight"],
        "norm.bias": w["embeddings.LayerNorm.bias"],
    }
    for i in range(len(model.layers)):
        p, o = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            qkv = [w[f"{p}attention.self.{name}.{part}"] for name in ("query", "key", "value")]
            state[f"{o}qkv.{part}"] = torch.cat(qkv)
            state[f"{o}attn_out.{part}"] = w[f"{p}attention.output.dense.{part}"]
            state[f"{o}attn_norm.{part}"] = w[f"{p}attention.output.LayerNorm.{part}"]
            state[f"{o}up.{part}"] = w[f"{p}intermediate.dense.{part}"]
            state[f"{o}down.{part}"] = w[f"{p}output.dense.{part}"]
            state[f"{o}out_norm.{part}"] = w[f"{p}output.LayerNorm.{part}"]
    model.load_state_dict(state)
