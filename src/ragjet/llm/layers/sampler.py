"""Choose each sequence's next token from its logits: penalties, temperature, top-k, top-p, seeds.

Greedy rows take the argmax in one batched op; sampled rows are processed together with their
per-request generators, so a seeded request draws the same tokens whatever else is in the batch.
Logprobs are of the chosen token under the model's own distribution (log-softmax of the raw logits),
which is what the confidence score wants, not of the reshaped sampling distribution. They are computed
only in steps where some request asked for them: a plain greedy step is one argmax over (B, V).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ragjet.llm.sampling_params import SamplingParams


@dataclass(slots=True)
class SamplingRow:
    params: SamplingParams
    token_ids: list[int]  # the sequence's prompt then output tokens (read, never copied unless penalised)
    num_prompt_tokens: int
    generator: torch.Generator | None

    @property
    def prompt_ids(self) -> list[int]:
        return self.token_ids[: self.num_prompt_tokens]

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]


def sample(logits: torch.Tensor, rows: list[SamplingRow]) -> tuple[list[int], list[float] | None]:
    """logits: (B, V) float32, one row per sequence.

    Returns (token ids, their logprobs); the logprobs are None when no row's params ask for them.
    """
    raw = logits
    logits = _apply_penalties(logits, rows)
    chosen = logits.argmax(dim=-1)
    for i, row in enumerate(rows):
        if not row.params.is_greedy:
            probs = _sampling_probs(logits[i], row.params)
            chosen[i] = torch.multinomial(probs, 1, generator=row.generator)[0]
    if not any(row.params.logprobs for row in rows):
        return chosen.tolist(), None
    token_logprobs = torch.log_softmax(raw, dim=-1).gather(1, chosen[:, None])[:, 0]
    return chosen.tolist(), token_logprobs.tolist()


def _apply_penalties(logits: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
    penalised = [i for i, r in enumerate(rows) if r.params.has_penalty]
    if not penalised:
        return logits
    logits = logits.clone()
    for i in penalised:
        p, row = rows[i].params, logits[i]
        if p.repetition_penalty != 1.0:  # CTRL-style, over prompt and output, as transformers does
            seen = torch.tensor(sorted(set(rows[i].token_ids)), device=logits.device)
            values = row[seen]
            row[seen] = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
        output_ids = rows[i].output_ids
        if output_ids and (p.presence_penalty or p.frequency_penalty):  # OpenAI-style, output only
            ids, counts = torch.tensor(output_ids, device=logits.device).unique(return_counts=True)
            row[ids] -= p.presence_penalty + p.frequency_penalty * counts.to(row.dtype)
    return logits


def _sampling_probs(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """The distribution to draw from: temperature, then top-k, then top-p (nucleus) truncation."""
    logits = logits / p.temperature
    if 0 < p.top_k < logits.numel():
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > p.top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return probs
