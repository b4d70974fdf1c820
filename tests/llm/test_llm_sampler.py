"""The batched sampler against a row-by-row reference: greedy steps take one argmax and compute logprobs
only when asked, and give the tokens and logprobs (log-softmax of the raw logits) the reference gives."""

from __future__ import annotations

import pytest
import torch

from ragjet.llm.layers.sampler import SamplingRow, draw, sample, sampling_probs
from ragjet.llm.sampling_params import SamplingParams


def reference_greedy(logits: torch.Tensor, rows: list[SamplingRow]) -> tuple[list[int], list[float]]:
    """Row by row: penalise (CTRL-style over prompt and output), argmax, log-softmax of the raw row."""
    tokens, logprobs = [], []
    for row_logits, row in zip(logits, rows, strict=True):
        penalised = row_logits.clone()
        if row.params.repetition_penalty != 1.0:
            for token in set(row.token_ids):
                value = penalised[token]
                penalised[token] = (
                    value / row.params.repetition_penalty if value > 0 else value * row.params.repetition_penalty
                )
        token = int(penalised.argmax())
        tokens.append(token)
        logprobs.append(float(torch.log_softmax(row_logits, dim=-1)[token]))
    return tokens, logprobs


def rows_for(params: list[SamplingParams]) -> list[SamplingRow]:
    torch.manual_seed(1)
    return [SamplingRow(p, torch.randint(0, 50, (12,)).tolist(), 8, None) for p in params]


@pytest.mark.parametrize("batch", [1, 16])
def test_plain_greedy_is_the_argmax_and_skips_logprobs(batch: int) -> None:
    torch.manual_seed(0)
    logits = torch.randn(batch, 50)
    rows = rows_for([SamplingParams(temperature=0.0)] * batch)
    tokens, logprobs = sample(logits, rows)
    assert tokens == reference_greedy(logits, rows)[0] and logprobs is None


def test_logprobs_when_any_row_asks_match_the_reference_for_every_row() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    params = [SamplingParams(temperature=0.0, logprobs=i == 2) for i in range(4)]
    params[1] = SamplingParams(temperature=0.0, repetition_penalty=1.3)
    rows = rows_for(params)
    tokens, logprobs = sample(logits, rows)
    expected_tokens, expected_logprobs = reference_greedy(logits, rows)
    assert tokens == expected_tokens and logprobs is not None
    torch.testing.assert_close(torch.tensor(logprobs), torch.tensor(expected_logprobs))


def test_seeded_sampling_in_a_greedy_batch_draws_what_it_draws_alone() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    sampled = SamplingParams(temperature=0.8, top_k=10, seed=5)
    alone, _ = sample(logits[1:2], [SamplingRow(sampled, [1, 2], 1, torch.Generator().manual_seed(5))])
    mixed_rows = rows_for([SamplingParams(temperature=0.0), sampled, SamplingParams(temperature=0.0)])
    mixed_rows[1].generator = torch.Generator().manual_seed(5)
    mixed, _ = sample(logits, mixed_rows)
    assert mixed[1] == alone[0] and mixed[0] == int(logits[0].argmax()) and mixed[2] == int(logits[2].argmax())


def reference_probs(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """One row, the textbook way: temperature, top-k by the k-th value, top-p over a full sort."""
    logits = logits / p.temperature
    if 0 < p.top_k < logits.numel():
        logits = logits.masked_fill(logits < torch.topk(logits, p.top_k).values[-1], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        sorted_probs[sorted_probs.cumsum(0) - sorted_probs > p.top_p] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return probs


def test_batched_sampling_distributions_equal_the_row_by_row_reference() -> None:
    torch.manual_seed(0)
    vocab = 3000  # wider than the nucleus candidates, so a flat row takes the full sort
    logits = torch.randn(6, vocab) * torch.tensor([6.0, 6.0, 0.5, 6.0, 3.0, 1.0])[:, None]  # peaked and flat rows
    params = [
        SamplingParams(temperature=0.7, top_p=0.9),
        SamplingParams(temperature=1.0, top_k=20),
        SamplingParams(temperature=1.3, top_p=0.95),  # flat: its nucleus is wider than the candidates
        SamplingParams(temperature=0.5, top_k=50, top_p=0.8),
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=0.9, top_k=vocab + 5, top_p=0.5),  # a top_k past the vocabulary is off
    ]
    got = sampling_probs(logits, params)
    expected = torch.stack([reference_probs(row, p) for row, p in zip(logits, params, strict=True)])
    torch.testing.assert_close(got, expected)


def test_draws_follow_the_distribution_and_never_take_a_zero_probability_token() -> None:
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(20_000, 1)
    tokens = draw(probs, torch.rand(20_000, generator=torch.Generator().manual_seed(0)))
    counts = torch.bincount(tokens, minlength=6).double() / 20_000
    assert counts[[0, 2, 5]].sum() == 0
    torch.testing.assert_close(counts[[1, 3, 4]], torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=0.02, rtol=0)
    # The CDF's first point, its very last, and a target rounded up to the total mass (the most likely token).
    edge = draw(probs[:3], torch.tensor([0.0, 1.0 - 1e-12, 1.0], dtype=torch.float64))
    assert edge.tolist() == [1, 4, 1]
