"""Choose each sequence's next token from its logits: penalties, temperature, top-k, top-p, seeds.

Greedy rows take the argmax in one batched op. Sampled rows are shaped together too: temperature, top-k
and top-p (nucleus) run as batched ops with per-row settings, so a step of 16 sampled sequences costs
about what one does (row by row, 16 rows took 92 ms a step on a 2-core CPU with top-p). Each row then
draws by inverting its cumulative distribution at one uniform number, taken from the request's own
generator when it has a seed, so a seeded request draws the same tokens whatever else is in the batch.
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
    sampled = [i for i, row in enumerate(rows) if not row.params.is_greedy]
    if sampled:
        index = torch.tensor(sampled, device=logits.device)
        probs = sampling_probs(logits.index_select(0, index), [rows[i].params for i in sampled])  # (S, V)
        uniforms = torch.cat([torch.rand(1, generator=rows[i].generator, device=logits.device) for i in sampled])
        chosen[index] = draw(probs, uniforms)
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


def sampling_probs(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """The distributions to draw from, (S, V) float32: temperature, then top-k, then top-p truncation.

    logits: (S, V) float32, one row per sampled sequence, ``params`` its settings.
    """
    vocab = logits.shape[-1]
    temperatures = torch.tensor([p.temperature for p in params], device=logits.device)
    logits = logits / temperatures[:, None]
    top_ks = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
    if min(top_ks) < vocab:
        kept = torch.topk(logits, max(k for k in top_ks if k < vocab), dim=-1).values  # (S, K) descending
        kth = kept.gather(1, torch.tensor([min(k, kept.shape[1]) - 1 for k in top_ks], device=logits.device)[:, None])
        kth[torch.tensor([k == vocab for k in top_ks], device=logits.device)] = float("-inf")
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if any(p.top_p < 1.0 for p in params):  # asked of the params, not the device (a host sync on CUDA)
        probs = _nucleus(probs, torch.tensor([p.top_p for p in params], device=logits.device))
    return probs


NUCLEUS_CANDIDATES = 1024  # tokens sorted first for top-p; a row whose nucleus is wider is sorted in full


def _nucleus(probs: torch.Tensor, top_ps: torch.Tensor) -> torch.Tensor:
    """Keep each row's smallest set of most likely tokens whose mass reaches its top_p; zero the rest.

    Sorting a whole vocabulary per row is the expensive part, so the most likely NUCLEUS_CANDIDATES tokens
    are sorted first; only rows whose nucleus reaches past them (flat distributions) sort in full.
    """
    candidates = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    top, order = torch.topk(probs, candidates, dim=-1)  # (S, C) descending
    inside = (top.cumsum(-1) - top) <= top_ps[:, None]  # the mass before a token is within top_p: keep it
    kept = torch.zeros_like(probs).scatter_(1, order, top * inside)
    wider = inside[:, -1] & (candidates < probs.shape[-1])  # the last candidate kept: the nucleus may go on
    if bool(wider.any()):
        rows = wider.nonzero()[:, 0]
        full, full_order = probs[rows].sort(dim=-1, descending=True)  # (R, V)
        full_inside = (full.cumsum(-1) - full) <= top_ps[rows, None]
        kept[rows] = torch.zeros_like(full).scatter_(1, full_order, full * full_inside)
    return kept


def draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of (unnormalised) ``probs`` (S, V), at the point ``uniforms`` (S,) in [0, 1) of
    its cumulative distribution; never a token of probability 0."""
    cdf = probs.double().cumsum(-1)  # (S, V); fp64 so that a long tail of tiny probabilities still counts
    targets = uniforms.double() * cdf[:, -1]
    tokens = torch.searchsorted(cdf, targets[:, None], right=True)[:, 0].clamp_(max=probs.shape[-1] - 1)
    # A target that rounded up to the total mass lands past the last token: take the most likely one there.
    return torch.where(probs.gather(1, tokens[:, None])[:, 0] > 0, tokens, probs.argmax(-1))
