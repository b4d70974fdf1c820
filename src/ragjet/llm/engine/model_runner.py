"""Runs the model for a scheduled batch: owns the KV pool, builds the step's inputs, samples tokens.

All sequences of a step are flattened into one (T,) token row; each brings its scheduled tokens: a
chunk of its prompt (prefilling) or its last token (decoding). Logits are computed only for each
sequence's last token, and not at all for a prompt chunk that stops short of the prompt's end. The KV
pool is one tensor in the model's compute dtype; each layer's attention gets views into it.

A step's inputs are built once as host lists (``StepInputs``) and reach the device in one copy, so no
layer reads a size back from the device. On CUDA, with the Triton attention kernel, pure decode steps
replay CUDA graphs captured per batch-size bucket (``DecodeGraphs``): a small model's decode step is
mostly kernel launches, which a replay issues at once.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from ragjet.llm import parallel
from ragjet.llm.engine.chunk_kv import chunk_slots, read_chunk, write_chunk
from ragjet.llm.engine.config import EngineConfig
from ragjet.llm.engine.memory import KVCacheTooSmallError, device_budget, plan_kv_cache
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.kernels import triton_attention
from ragjet.llm.layers.attention import Attention, AttentionMetadata, query_starts, to_device
from ragjet.llm.layers.sampler import SamplingRow, sample
from ragjet.llm.loaders import LoadedModel
from ragjet.llm.models.cpu_decode import FusedCpuDecode
from ragjet.llm.models.llama import LlamaForCausalLM
from ragjet.llm.quantize import compute_dtype
from ragjet.llm.segments import ChunkSpan

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class StepInputs:
    """One step as host lists, built once from the scheduled sequences."""

    input_ids: list[int] = field(default_factory=list)  # (T,) each sequence's scheduled tokens, then its draft
    positions: list[int] = field(default_factory=list)  # (T,)
    slot_mapping: list[int] = field(default_factory=list)  # (T,) flat cache slot (block * block_size + offset)
    q_lens: list[int] = field(default_factory=list)  # (B,) tokens per sequence this step
    context_lens: list[int] = field(default_factory=list)  # (B,) tokens per sequence once this step's are written
    block_tables: list[list[int]] = field(default_factory=list)  # (B, W) padded with 0 to a common width W
    fresh_seqs: list[bool] = field(default_factory=list)  # (B,) nothing of the sequence is cached yet
    num_scored: list[int] = field(default_factory=list)  # (B,) tokens with logits: the last and each draft; 0: a chunk
    gap_seqs: list[bool] = field(default_factory=list)  # (B,) computes positions other than its last q_len (blend)

    @property
    def scored_rows(self) -> list[int]:
        """Flattened rows that get logits, in order."""
        ends = itertools.accumulate(self.q_lens)
        return [i for end, n in zip(ends, self.num_scored, strict=True) for i in range(end - n, end)]

    @property
    def is_plain_decode(self) -> bool:
        """One token per sequence, each scored (no drafts, no prompt chunks): what a decode graph replays."""
        return all(n == 1 for n in self.q_lens) and all(n == 1 for n in self.num_scored)


def prepare_step(seqs: list[Sequence], block_size: int) -> StepInputs:
    """The step's inputs for ``seqs``, each bringing its scheduled tokens and its draft."""
    inputs = StepInputs()
    for seq in seqs:
        start = seq.num_computed_tokens
        end = start + seq.num_scheduled_tokens + len(seq.draft_ids)
        positions = seq.compute_positions or range(start, end)  # a blend step has no draft
        inputs.input_ids += [seq.token_ids[p] for p in positions] if seq.compute_positions else (
            seq.token_ids[start : start + seq.num_scheduled_tokens] + seq.draft_ids)  # fmt: skip
        inputs.positions += positions
        inputs.slot_mapping += (seq.block_table[p // block_size] * block_size + p % block_size
                                for p in positions)  # fmt: skip
        inputs.q_lens.append(len(positions))
        inputs.context_lens.append(positions[-1] + 1)
        inputs.fresh_seqs.append(start == 0 and not seq.compute_positions)
        inputs.gap_seqs.append(bool(seq.compute_positions))
        inputs.num_scored.append(0 if seq.is_prefill_chunk else 1 + len(seq.draft_ids))
    width = max(len(s.block_table) for s in seqs)
    inputs.block_tables = [s.block_table + [0] * (width - len(s.block_table)) for s in seqs]
    return inputs


@dataclass(slots=True)
class StepTensors:
    input_ids: torch.Tensor  # (T,)
    positions: torch.Tensor  # (T,)
    meta: AttentionMetadata
    scored_rows: torch.Tensor  # (N,) rows of the hidden states that get logits


def to_step_tensors(inputs: StepInputs, device: torch.device) -> StepTensors:
    """The step's tensors on ``device``, all from one host-to-device copy."""
    num_seqs, width = len(inputs.q_lens), len(inputs.block_tables[0])
    ids, positions, slots, context_lens, tables, starts, scored = to_device(
        [inputs.input_ids, inputs.positions, inputs.slot_mapping, inputs.context_lens,
         list(itertools.chain.from_iterable(inputs.block_tables)), [0, *itertools.accumulate(inputs.q_lens)],
         inputs.scored_rows],
        device,
    )  # fmt: skip
    meta = AttentionMetadata(
        q_lens=inputs.q_lens,
        context_lens=context_lens,
        slot_mapping=slots,
        block_tables=tables.view(num_seqs, width),
        fresh_seqs=inputs.fresh_seqs,
        query_starts=starts,
        host_context_lens=inputs.context_lens,
        query_positions=positions if any(inputs.gap_seqs) else None,
        gap_seqs=inputs.gap_seqs if any(inputs.gap_seqs) else None,
    )
    return StepTensors(ids, positions, meta, scored)


def decode_buckets(max_num_seqs: int) -> list[int]:
    """Batch sizes a decode graph is captured for: powers of two below ``max_num_seqs``, then it."""
    sizes = [1 << i for i in range(max_num_seqs.bit_length()) if 1 << i < max_num_seqs]
    return [*sizes, max_num_seqs]


def bucket_size(num_seqs: int, buckets: list[int]) -> int:
    """The smallest bucket that holds ``num_seqs`` sequences; ValueError past the largest."""
    for size in buckets:
        if size >= num_seqs:
            return size
    raise ValueError(f"{num_seqs} sequences exceed the largest decode bucket ({buckets[-1]})")


def pad_decode(inputs: StepInputs, size: int, width: int, pad_block: int, block_size: int) -> StepInputs:
    """A plain decode step grown to ``size`` sequences and block tables ``width`` wide, as a graph replays it.

    Each dummy sequence is one token at position 0 in ``pad_block``, a block no sequence owns: it writes its
    K/V there and attends to that one key, so real sequences never see it.
    """
    num_pad = size - len(inputs.q_lens)
    pad_table = [pad_block] + [0] * (width - 1)
    return StepInputs(
        input_ids=inputs.input_ids + [0] * num_pad,
        positions=inputs.positions + [0] * num_pad,
        slot_mapping=inputs.slot_mapping + [pad_block * block_size] * num_pad,
        q_lens=inputs.q_lens + [1] * num_pad,
        context_lens=inputs.context_lens + [1] * num_pad,
        block_tables=[t + [0] * (width - len(t)) for t in inputs.block_tables] + [pad_table] * num_pad,
        fresh_seqs=inputs.fresh_seqs + [False] * num_pad,
        num_scored=inputs.num_scored + [1] * num_pad,
        gap_seqs=inputs.gap_seqs + [False] * num_pad,
    )


class DecodeGraphs:
    """CUDA graphs of the decode forward (through the logits), one per batch-size bucket, sharing one pool.

    Each graph reads static input buffers; a replay copies the padded step into them. Only the Triton attention
    path is captured: it reads every length on the device, so the lengths the capture saw do not matter.
    """

    def __init__(self, model: LlamaForCausalLM, buckets: list[int], width: int, pad_block: int, block_size: int):
        self.model, self.buckets, self.width = model, buckets, width
        self.pad_block, self.block_size = pad_block, block_size
        device = next(model.parameters()).device
        dummy = pad_decode(StepInputs(), buckets[-1], width, pad_block, block_size)
        self.static = to_step_tensors(dummy, device)  # what the graphs read; query starts stay 0, 1, 2, ...
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool for all graphs
        for size in reversed(buckets):  # the largest first: the smaller ones reuse its memory
            self.graphs[size], self.logits[size] = self._capture(size)

    def _forward(self, size: int) -> torch.Tensor:
        static = self.static.meta
        meta = AttentionMetadata(
            q_lens=[1] * size,
            context_lens=static.context_lens[:size],
            slot_mapping=static.slot_mapping[:size],
            block_tables=static.block_tables[:size],
            fresh_seqs=[False] * size,
            query_starts=query_starts(static)[: size + 1],
            host_context_lens=[1] * size,  # placeholders: the captured kernel reads the device lengths
        )
        return self.model.compute_logits(self.model(self.static.input_ids[:size], self.static.positions[:size], meta))

    def _capture(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        side = torch.cuda.Stream()  # warm up (Triton compiles, allocators settle) outside the capture
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._forward(size)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self._forward(size)
        return graph, logits

    def handles(self, inputs: StepInputs) -> bool:
        return (inputs.is_plain_decode and len(inputs.q_lens) <= self.buckets[-1]
                and len(inputs.block_tables[0]) <= self.width)  # fmt: skip

    def run(self, inputs: StepInputs) -> torch.Tensor:
        """Logits (B, vocab) float32 of a step ``handles`` accepts; valid until the next replay."""
        num_seqs = len(inputs.q_lens)
        size = bucket_size(num_seqs, self.buckets)
        padded = pad_decode(inputs, size, self.width, self.pad_block, self.block_size)
        step, static = to_step_tensors(padded, self.static.input_ids.device), self.static
        static.input_ids[:size].copy_(step.input_ids)
        static.positions[:size].copy_(step.positions)
        for name in ("slot_mapping", "context_lens", "block_tables"):
            getattr(static.meta, name)[:size].copy_(getattr(step.meta, name))
        self.graphs[size].replay()
        return self.logits[size][:num_seqs]


class ModelRunner:
    def __init__(self, loaded: LoadedModel, config: EngineConfig, max_tokens_needed: int,
                 leader_blocks: int | None = None):  # fmt: skip
        """`leader_blocks`: on a tensor-parallel follower, rank 0's KV pool size (its block ids are used here)."""
        self.model, self.block_size, self.config = loaded.model, config.block_size, config
        block_size = config.block_size
        self.device = next(loaded.model.parameters()).device
        self.dtype = compute_dtype(loaded.model)
        if config.cpu_kernels and self.device.type == "cpu":
            cpu_kernels.load(self.dtype)  # the layers use them from now on; a failed build leaves the torch paths
        self.layers = [m for m in loaded.model.modules() if isinstance(m, Attention)]
        cfg = loaded.config
        bytes_per_block = 2 * len(self.layers) * block_size * cfg.num_kv_heads * cfg.head_dim * self.dtype.itemsize
        measured = device_budget(self.model, self.device, config.kv_cache_memory_gb, config.gpu_memory_utilization,
                                 config.max_num_batched_tokens, config.max_num_seqs)  # fmt: skip
        self.memory = plan_kv_cache(
            device=str(self.device), **measured, bytes_per_block=bytes_per_block,  # type: ignore[arg-type]
            blocks_per_seq=-(-min(config.max_model_len, cfg.max_position_embeddings) // block_size),
            blocks_wanted=-(-max_tokens_needed // block_size),  # every sequence at full length
        )  # fmt: skip
        self.num_blocks = self.memory.num_blocks
        # Tensor parallel: rank 0 sizes the pool (each rank holds the same blocks of its own KV heads) and sends
        # every step's inputs; a follower only runs forwards.
        self.leads = config.tensor_parallel_size > 1 and leader_blocks is None
        if self.leads:
            parallel.from_leader(self.num_blocks)
        elif leader_blocks is not None:
            if leader_blocks > self.num_blocks:
                raise KVCacheTooSmallError(
                    f"rank 0's KV pool has {leader_blocks} blocks; this rank's memory fits {self.num_blocks}"
                )
            self.num_blocks = leader_blocks
        use_graphs = self.device.type == "cuda" and triton_attention.available() and config.tensor_parallel_size == 1
        # With graphs, one block more than the allocator hands out: where padded decode slots write (pad_decode).
        shape = (2, len(self.layers), self.num_blocks + use_graphs, block_size, cfg.num_kv_heads, cfg.head_dim)
        self.kv_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        for i, layer in enumerate(self.layers):
            layer.k_cache, layer.v_cache = self.kv_cache[0, i], self.kv_cache[1, i]
        if config.fused_cpu_decode and cpu_kernels.loaded() and self.device.type == "cpu":
            self.model.model.fused_decode = FusedCpuDecode.build(self.model.model)
        log.info("KV cache: %d blocks of %d tokens, %.0f MiB", self.num_blocks, block_size,
                 self.kv_cache.numel() * self.dtype.itemsize / 2**20)  # fmt: skip
        self.graphs = self._capture_graphs(cfg.max_position_embeddings) if use_graphs else None

    @torch.inference_mode()
    def _capture_graphs(self, max_positions: int) -> DecodeGraphs | None:
        """Decode graphs for every bucket up to max_num_seqs; None (eager decode, logged) if capture fails."""
        width = -(-min(self.config.max_model_len, max_positions) // self.block_size)
        try:
            graphs = DecodeGraphs(self.model, decode_buckets(self.config.max_num_seqs), width, self.num_blocks,
                                  self.block_size)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 (eager decode computes the same, with more launches)
            log.warning("CUDA graph capture failed (%s); decode steps run eagerly", exc)
            return None
        log.info("CUDA graphs captured for decode batches of %s", graphs.buckets)
        return graphs

    @torch.inference_mode()
    def run(
        self, seqs: list[Sequence], generators: dict[str, torch.Generator]
    ) -> tuple[list[list[int]], list[list[float]] | None]:
        """One forward over every sequence's scheduled tokens (and its draft, if any).

        Returns, per sequence, the tokens chosen after its last token and after each draft position
        (1 + len(draft) of them; none for a prompt chunk that is not the prompt's end), and their logprobs
        (None when no sequence asked for logprobs).
        """
        for seq in seqs:
            self._import_chunks(seq)
        inputs = prepare_step(seqs, self.block_size)
        if not any(inputs.num_scored):
            self._forward(inputs)
            return [[] for _ in seqs], None
        if self.graphs is not None and self.graphs.handles(inputs):
            logits = self.graphs.run(inputs)
        else:
            logits = self.model.compute_logits(self._forward(inputs))
        rows = [SamplingRow(s.params, s.token_ids, s.num_prompt_tokens, generators.get(s.request_id))
                for s, n in zip(seqs, inputs.num_scored, strict=True) for _ in range(n)]  # fmt: skip
        tokens, logprobs = sample(logits, rows)
        return _split(tokens, inputs.num_scored), None if logprobs is None else _split(logprobs, inputs.num_scored)

    def _import_chunks(self, seq: Sequence) -> None:
        """Write the K/V of the chunks a blend step imports into the sequence's blocks (before its forward)."""
        for chunk in seq.pending_imports:
            span = chunk.span
            slots = chunk_slots(seq.block_table, span.start + chunk.skip, span.end, self.block_size, self.device)
            write_chunk(self.kv_cache, chunk.entry, slots, span, chunk.skip, self.model.model.rotary.cos_sin_cache)

    @torch.inference_mode()
    def read_chunk(self, seq: Sequence, span: ChunkSpan) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A computed chunk's (keys, values) on the host, and their bytes: what the chunk cache stores."""
        slots = chunk_slots(seq.block_table, span.start, span.end, self.block_size, self.device)
        return read_chunk(self.kv_cache, slots)

    def close(self) -> None:
        """Let tensor-parallel followers go (their loop ends on None)."""
        if self.leads:
            parallel.from_leader(None)
            parallel.leave_tensor_parallel()

    def _forward(self, inputs: StepInputs) -> torch.Tensor:
        """Hidden states (N, hidden) of the step's scored rows (all T when nothing is scored)."""
        if self.leads:
            parallel.from_leader(inputs)
        step = to_step_tensors(inputs, self.device)
        hidden = self.model(step.input_ids, step.positions, step.meta)  # (T, hidden)
        if 0 < len(step.scored_rows) < len(inputs.input_ids):
            hidden = hidden.index_select(0, step.scored_rows)
        return hidden


def _split(values: list[T], sizes: list[int]) -> list[list[T]]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out
