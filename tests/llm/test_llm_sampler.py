"""The batched sampler against a row-by-row reference: greedy steps take one argmax and compute logprobs
only when asked, and give the tokens and logprobs (log-softmax of the raw logits) the reference gives."""

from __future__ import annotations

import pytest
import torch

from ragjet.llm.layers.sampler import SamplingRow, sample
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
