"""A Llama-family model's decoder layers in one op for CPU decode steps (kernels/cpu_decode.cpp).

On a 2-core CPU a decode step of SmolLM2-135M is ~13 ms, ~4 ms of it Python: module calls, views and the
dispatch of ~30 small ops per layer, for 30 layers. ``decode_layers`` runs the same ops, in the same order, from
C++, so it returns the values the Python layers return (tests/llm/test_llm_cpu_decode.py compares them).

It covers the common CPU case only: every layer linear int4 without bias (``Int4WeightOnlyLinear``, alone or
behind ``PrefillDenseLinear``), no q/k norm, a KV cache assigned, and steps whose sequences all have history and
bring few tokens (decode, speculative verify): exactly the steps where the Python path reads the pool with the
fused attention kernel and multiplies by the int4 weights. Every other model and step keeps the Python path.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch

from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.layers.attention import KERNEL_MAX_QUERIES, AttentionMetadata, query_starts
from ragjet.llm.layers.linear import Int4WeightOnlyLinear
from ragjet.llm.layers.prefill_linear import PrefillDenseLinear

if TYPE_CHECKING:
    from ragjet.llm.models.llama import LlamaDecoderLayer, LlamaModel


class FusedCpuDecode:
    """The flat tensor lists ``decode_layers`` reads, gathered once from a model with its final weights and KV
    cache (``build``); a later ``.to()`` or cache reassignment needs a new one."""

    def __init__(self, model: LlamaModel, linears: list[Int4WeightOnlyLinear], max_rows: float):
        layers = decoder_layers(model)
        first = layers[0].self_attn
        self.num_heads, self.num_kv_heads = first.num_heads, first.num_kv_heads
        self.scale, self.eps = first.attn.scale, layers[0].input_layernorm.eps
        self.group_size, self.dtype = linears[0].group_size, linears[0].scales_and_zeros.dtype
        self.max_rows = max_rows  # steps of more rows take the layers' dense copies: the Python path
        self.norms = [n.weight for layer in layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
        self.linears = [t for linear in linears for t in (linear.weight, linear.scales_and_zeros)]
        self.caches = [c for layer in layers for c in (layer.self_attn.attn.k_cache, layer.self_attn.attn.v_cache)]

    @classmethod
    def build(cls, model: LlamaModel) -> FusedCpuDecode | None:
        """For a ``LlamaModel`` the op covers (see the module docstring), else None."""
        linears: list[Int4WeightOnlyLinear] = []
        max_rows = math.inf
        for layer in decoder_layers(model):
            attn = layer.self_attn
            if attn.q_norm is not None or attn.attn.k_cache is None or attn.attn.v_cache is None:
                return None
            for projection in (attn.qkv_proj, attn.o_proj, layer.mlp.gate_up_proj, layer.mlp.down_proj):
                module: torch.nn.Module = projection
                if isinstance(module, PrefillDenseLinear):
                    max_rows = min(max_rows, module.min_rows - 1)
                    module = module.quantized
                if not isinstance(module, Int4WeightOnlyLinear) or module.bias is not None:
                    return None
                linears.append(module)
        if not linears or len({linear.group_size for linear in linears}) != 1:
            return None
        return cls(model, linears, max_rows)

    def handles(self, x: torch.Tensor, meta: AttentionMetadata) -> bool:
        """Whether the op covers this step: the Python layers would take the fused kernels and int4 weights."""
        return (
            cpu_kernels.usable(x)
            and x.dtype == self.dtype
            and x.shape[0] <= self.max_rows
            and max(meta.q_lens) <= KERNEL_MAX_QUERIES
            and not any(meta.fresh_seqs or [])
            and meta.query_positions is None
        )

    def __call__(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (T, hidden) token embeddings -> the last layer's (output, residual), as the layer loop leaves them."""
        cos, sin = rope
        return torch.ops.ragjet_cpu.decode_layers(
            x, cos, sin, meta.slot_mapping, meta.block_tables, meta.context_lens, query_starts(meta),
            self.norms, self.linears, self.caches, self.num_heads, self.num_kv_heads, self.group_size, self.eps,
            self.scale,
        )  # fmt: skip


def decoder_layers(model: LlamaModel) -> list[LlamaDecoderLayer]:
    return cast("list[LlamaDecoderLayer]", list(model.layers))
