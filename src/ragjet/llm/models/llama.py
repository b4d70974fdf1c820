"""Llama-family decoder over flattened tokens: Llama, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm).

Tokens of every sequence in a step arrive as one (T,) vector; only attention needs to know where
sequences start and end (``AttentionMetadata``). Projections are fused (one q/k/v matmul, one gate/up
matmul) because a small model's decode step is dominated by per-op overhead, not FLOPs.

Parameter names (what loaders produce; each ``N`` a layer index):
``model.embed_tokens.weight``, ``model.layers.N.input_layernorm.weight``,
``model.layers.N.self_attn.qkv_proj.{weight,bias}`` (rows: q | k | v),
``model.layers.N.self_attn.{q_norm,k_norm}.weight`` (Qwen3), ``model.layers.N.self_attn.o_proj.weight``,
``model.layers.N.post_attention_layernorm.weight``, ``model.layers.N.mlp.gate_up_proj.weight``
(rows: gate | up), ``model.layers.N.mlp.down_proj.weight``, ``model.norm.weight``, ``lm_head.weight``
(absent when tied to the embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ragjet.llm.config import ModelConfig
from ragjet.llm.layers.activation import SiluAndMul
from ragjet.llm.layers.attention import Attention, AttentionMetadata
from ragjet.llm.layers.norm import RMSNorm
from ragjet.llm.layers.rotary import RotaryEmbedding, apply_rotary
from ragjet.llm.models.cpu_decode import FusedCpuDecode


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.q_size, self.kv_size = config.q_size, config.kv_size
        self.qkv_proj = nn.Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.q_size, config.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.attn = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim**-0.5)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        num_tokens = x.shape[0]
        qkv = self.qkv_proj(x)  # (T, (Hq + 2 Hkv) * D)
        qk, v = qkv.split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        qk = qk.view(num_tokens, self.num_heads + self.num_kv_heads, self.head_dim)  # (T, Hq + Hkv, D)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)  # (T, Hkv, D)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
            qk = torch.cat([self.q_norm(q), self.k_norm(k)], dim=1)  # (T, Hq + Hkv, D)
        # q and k rotate together: one RoPE call instead of two.
        q, k = apply_rotary(qk, cos, sin).split([self.num_heads, self.num_kv_heads], dim=1)
        out = self.attn(q, k, v, meta)  # (T, Hq, D)
        return self.o_proj(out.reshape(num_tokens, self.q_size))  # (T, Hq * D) -> (T, hidden)


class LlamaMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))  # (T, hidden) -> (T, 2 I) -> (T, I) -> (T, hidden)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-norm block. Carries (x, residual) separately so each add is folded into the next norm."""
        if residual is None:
            h, residual = self.input_layernorm(x), x
        else:
            h, residual = self.input_layernorm.add_forward(x, residual)
        h = self.self_attn(h, *rope, meta)
        h, residual = self.post_attention_layernorm.add_forward(h, residual)
        return self.mlp(h), residual


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(
            config.head_dim, config.rope_theta, config.rope_scaling, config.max_position_embeddings
        )
        self.layers = nn.ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # The layers as one op for CPU decode steps (cpu_decode.py); set by the engine once weights and cache are final.
        self.fused_decode: FusedCpuDecode | None = None

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        x, residual = self.embed_tokens(input_ids), None  # (T, hidden)
        rope = self.rotary(positions)  # (T, 1, D) cos and sin, gathered once for all layers
        if self.fused_decode is not None and self.fused_decode.handles(x, meta):
            x, residual = self.fused_decode(x, rope, meta)
        else:
            for layer in self.layers:
                x, residual = layer(x, residual, rope, meta)
        return self.norm.add_forward(x, residual)[0] if residual is not None else self.norm(x)


class LlamaForCausalLM(nn.Module):
    """The decoder plus its LM head. Build it, then load weights with ``ragjet.llm.loaders``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        # An nn.Linear, or after ``quantize_model`` any module mapping (N, hidden) -> (N, vocab).
        self.lm_head: nn.Module | None = (
            None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, False)
        )

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions: (T,) int64, all sequences' new tokens flattened in ``meta.q_lens`` order.

        Returns the final hidden states (T, hidden) in the model dtype; pick the rows that need logits
        (usually each sequence's last) and pass them to ``compute_logits``.
        """
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (N, hidden) -> (N, vocab) float32."""
        if self.lm_head is None:
            return F.linear(hidden, self.model.embed_tokens.weight).float()
        return self.lm_head(hidden).float()
