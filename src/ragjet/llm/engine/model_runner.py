"""Runs the model for a scheduled batch: owns the KV pool, builds the step's inputs, samples tokens.

All sequences of a step are flattened into one (T,) token row; each brings its scheduled tokens: a
chunk of its prompt (prefilling) or its last token (decoding). Logits are computed only for each
sequence's last token, and not at all for a prompt chunk that stops short of the prompt's end. The KV
pool is one tensor in the model's compute dtype; each layer's attention gets views into it.
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

import torch

from ragjet.llm.engine.config import EngineConfig
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.layers.attention import Attention, AttentionMetadata
from ragjet.llm.layers.sampler import SamplingRow, sample
from ragjet.llm.loaders import LoadedModel
from ragjet.llm.quantize import compute_dtype

log = logging.getLogger(__name__)
T = TypeVar("T")
CPU_CACHE_CAP_BYTES = 2 << 30  # auto-sized CPU caches stay below this and below 10% of RAM


class ModelRunner:
    def __init__(self, loaded: LoadedModel, config: EngineConfig, max_tokens_needed: int):
        self.model, self.block_size, self.config = loaded.model, config.block_size, config
        block_size = config.block_size
        self.device = next(loaded.model.parameters()).device
        self.dtype = compute_dtype(loaded.model)
        if config.cpu_kernels and self.device.type == "cpu":
            cpu_kernels.load(self.dtype)  # the layers use them from now on; a failed build leaves the torch paths
        self.layers = [m for m in loaded.model.modules() if isinstance(m, Attention)]
        cfg = loaded.config
        bytes_per_block = 2 * len(self.layers) * block_size * cfg.num_kv_heads * cfg.head_dim * self.dtype.itemsize
        budget = int(config.kv_cache_memory_gb * 2**30) or self._auto_budget()
        wanted = -(-max_tokens_needed // block_size)  # room for every sequence at full length is plenty
        self.num_blocks = max(1, min(budget // bytes_per_block, wanted))
        shape = (2, len(self.layers), self.num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim)
        self.kv_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        for i, layer in enumerate(self.layers):
            layer.k_cache, layer.v_cache = self.kv_cache[0, i], self.kv_cache[1, i]
        log.info("KV cache: %d blocks of %d tokens, %.0f MiB", self.num_blocks, block_size,
                 self.kv_cache.numel() * self.dtype.itemsize / 2**20)  # fmt: skip

    def _auto_budget(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * self.config.gpu_memory_utilization)
        return min(CPU_CACHE_CAP_BYTES, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 10)

    @torch.inference_mode()
    def run(
        self, seqs: list[Sequence], generators: dict[str, torch.Generator]
    ) -> tuple[list[list[int]], list[list[float]] | None]:
        """One forward over every sequence's scheduled tokens (and its draft, if any).

        Returns, per sequence, the tokens chosen after its last token and after each draft position
        (1 + len(draft) of them; none for a prompt chunk that is not the prompt's end), and their logprobs
        (None when no sequence asked for logprobs).
        """
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        q_lens: list[int] = []
        context_lens: list[int] = []
        for seq in seqs:
            start = seq.num_computed_tokens
            end = start + seq.num_scheduled_tokens + len(seq.draft_ids)
            input_ids += seq.token_ids[start : start + seq.num_scheduled_tokens] + seq.draft_ids
            positions += range(start, end)
            slots += (seq.block_table[p // self.block_size] * self.block_size + p % self.block_size
                      for p in range(start, end))  # fmt: skip
            q_lens.append(end - start)
            context_lens.append(end)
        width = max(len(s.block_table) for s in seqs)
        tables = [s.block_table + [0] * (width - len(s.block_table)) for s in seqs]
        as_tensor = lambda data: torch.tensor(data, dtype=torch.long, device=self.device)  # noqa: E731
        meta = AttentionMetadata(
            q_lens=q_lens,
            context_lens=as_tensor(context_lens),
            slot_mapping=as_tensor(slots),
            block_tables=as_tensor(tables),
            fresh_seqs=[s.num_computed_tokens == 0 for s in seqs],
        )
        hidden = self.model(as_tensor(input_ids), as_tensor(positions), meta)
        # Logits for each sequence's last token and its draft positions: (sum of 1 + len(draft), hidden).
        num_scored = [0 if s.is_prefill_chunk else 1 + len(s.draft_ids) for s in seqs]
        if not any(num_scored):
            return [[] for _ in seqs], None
        if len(input_ids) > len(seqs):
            ends = torch.cumsum(as_tensor(q_lens), 0)
            scored = [i for end, n in zip(ends.tolist(), num_scored, strict=True) for i in range(end - n, end)]
            if len(scored) < len(input_ids):
                hidden = hidden.index_select(0, as_tensor(scored))
        logits = self.model.compute_logits(hidden)
        rows = [SamplingRow(s.params, s.token_ids, s.num_prompt_tokens, generators.get(s.request_id))
                for s, n in zip(seqs, num_scored, strict=True) for _ in range(n)]  # fmt: skip
        tokens, logprobs = sample(logits, rows)
        return _split(tokens, num_scored), None if logprobs is None else _split(logprobs, num_scored)


def _split(values: list[T], sizes: list[int]) -> list[list[T]]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out
