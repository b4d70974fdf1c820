"""Tensor parallelism over torch.distributed (NCCL on CUDA, gloo on the CPU), Megatron-style.

A loaded model is sharded in place across `world_size` processes: each attention layer keeps its share of the
query and KV heads (the fused q/k/v projection is column-parallel by head), each MLP its share of the
intermediate units (gate/up column-parallel), and the two projections back to the hidden size (o_proj,
down_proj) are row-parallel: every rank multiplies its slice and one all-reduce sums the partial results. So a
layer costs two all-reduces, and each rank's KV cache holds only its own KV heads. Embeddings, norms and the LM
head stay whole on every rank, so after the last all-reduce every rank has the same hidden states and logits.

Serving (llm.tensor_parallel_size = N): rank 0 runs the engine (scheduler, sampler); before each forward it
broadcasts the step's host-side inputs, and ranks 1..N-1, in processes of their own (backends/tp_workers.py), run
the same forward on their shards, joining its all-reduces; they never schedule or sample. Every rank can also run
a whole engine on the same requests (SPMD: scheduling is deterministic and the logits equal on all ranks), which
is how the test checks the sharding. Shard before quantising (quantize_model works on the slices).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
from torch import nn

from ragjet.llm.loaders import LoadedModel
from ragjet.llm.models.llama import LlamaAttention, LlamaMLP


class RowParallelLinear(nn.Module):
    """A linear over this rank's slice of the input features; the all-reduce sums the ranks' partial outputs."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        dist.all_reduce(out)
        return out


def from_leader(value: object = None) -> object:
    """Rank 0's `value` on every rank (rank 0 passes it, the followers pass nothing and get it)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_tensor_parallel(rank: int, world_size: int, init_method: str | None = None) -> None:
    """Join the process group (NCCL when CUDA is there, else gloo); `init_method` defaults to env:// variables."""
    if dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)


def leave_tensor_parallel() -> None:
    """Leave the process group, if joined. A process that exits still in it can abort at exit ("terminate called
    without an active exception": the group's threads outlive the interpreter), after its work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_model(loaded: LoadedModel, rank: int, world_size: int) -> LoadedModel:
    """This rank's shard of `loaded` (the model is changed in place; the config says the per-rank head counts)."""
    config = loaded.config
    for name, count in (("num_heads", config.num_heads), ("num_kv_heads", config.num_kv_heads),
                        ("intermediate_size", config.intermediate_size)):  # fmt: skip
        if count % world_size:
            raise ValueError(f"tensor_parallel_size={world_size} must divide the model's {name} ({count})")
    if world_size == 1:
        return loaded
    for module in loaded.model.modules():
        if isinstance(module, LlamaAttention):
            _shard_attention(module, rank, world_size)
        elif isinstance(module, LlamaMLP):
            _shard_mlp(module, rank, world_size)
    shard_config = dataclasses.replace(config, num_heads=config.num_heads // world_size,
                                       num_kv_heads=config.num_kv_heads // world_size,
                                       intermediate_size=config.intermediate_size // world_size)  # fmt: skip
    return dataclasses.replace(loaded, config=shard_config)


def _rows(weight: torch.Tensor, sizes: list[int], rank: int, world_size: int) -> torch.Tensor:
    """Of each consecutive block of rows (sizes; a bias is a column), this rank's share, in block order."""
    return torch.cat([block.chunk(world_size, dim=0)[rank] for block in weight.split(sizes, dim=0)])


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                       dtype=weight.dtype)  # fmt: skip
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _shard_attention(attn: LlamaAttention, rank: int, world_size: int) -> None:
    sizes = [attn.q_size, attn.kv_size, attn.kv_size]  # qkv_proj rows: q | k | v, each head-major
    qkv = attn.qkv_proj
    bias = None if qkv.bias is None else _rows(qkv.bias, sizes, rank, world_size)
    attn.qkv_proj = _linear(_rows(qkv.weight, sizes, rank, world_size), bias)
    o_weight = attn.o_proj.weight.chunk(world_size, dim=1)[rank]  # its input features are this rank's q heads
    attn.o_proj = RowParallelLinear(_linear(o_weight.contiguous(), None))  # type: ignore[assignment]
    attn.num_heads, attn.num_kv_heads = attn.num_heads // world_size, attn.num_kv_heads // world_size
    attn.q_size, attn.kv_size = attn.q_size // world_size, attn.kv_size // world_size
    attn.attn.num_heads, attn.attn.num_kv_heads = attn.num_heads, attn.num_kv_heads


def _shard_mlp(mlp: LlamaMLP, rank: int, world_size: int) -> None:
    half = mlp.gate_up_proj.weight.shape[0] // 2  # gate_up rows: gate | up
    mlp.gate_up_proj = _linear(_rows(mlp.gate_up_proj.weight, [half, half], rank, world_size), None)
    down = mlp.down_proj.weight.chunk(world_size, dim=1)[rank]
    mlp.down_proj = RowParallelLinear(_linear(down.contiguous(), None))  # type: ignore[assignment]
