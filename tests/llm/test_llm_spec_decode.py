"""Prompt-lookup speculative decoding: drafting and acceptance rules, and the engine with drafts against
the engine without them (identical greedy tokens in fp32), stops inside an accepted draft included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.engine.outputs import EngineStats, RequestOutput
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.engine.spec_decode import accepted_tokens, propose_draft
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams

REPETITIVE = [[7, 8, 9, 10, 7, 8, 9, 10, 7, 8], [50, 51, 52, 53, 54, 55, 50, 51, 52]]


def test_propose_draft_copies_what_followed_the_latest_longest_suffix() -> None:
    assert propose_draft([1, 2, 3, 4, 1, 2, 3], 3) == [4, 1, 2]
    assert propose_draft([5, 1, 2, 9, 1, 2, 8, 1, 2], 2) == [8, 1]  # the most recent occurrence
    assert propose_draft([1, 2, 3, 7, 2, 3], 4) == [7, 2, 3]  # falls back from 3-grams to 2-grams
    assert propose_draft([1, 2, 3, 4], 3) == [] and propose_draft([3], 3) == []  # nothing recurs


def test_accepted_tokens_keep_the_agreeing_prefix_plus_the_models_token() -> None:
    assert accepted_tokens([], [5]) == [5]
    assert accepted_tokens([4, 1, 2], [4, 1, 2, 6]) == [4, 1, 2, 6]
    assert accepted_tokens([4, 1, 2], [4, 9, 2, 6]) == [4, 9]
    assert accepted_tokens([4, 1, 2], [3, 1, 2, 6]) == [3]


def test_reserve_adds_blocks_while_free_ones_last() -> None:
    allocator = BlockAllocator(num_blocks=3, block_size=4, enable_prefix_caching=False)
    seq = Sequence("a", list(range(7)), 7, SamplingParams(), None, max_len=100)  # type: ignore[arg-type]
    allocator.allocate(seq)
    assert len(seq.block_table) == 2 and allocator.reserve(seq, 10) == 10 and len(seq.block_table) == 3
    assert allocator.reserve(seq, 16) == 12 and allocator.num_free_blocks == 0


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)


def generate(
    loaded: LoadedModel, prompts: list[list[int]], params: SamplingParams, num_speculative_tokens: int
) -> tuple[list[RequestOutput], EngineStats]:
    engine = LLMEngine(
        loaded, EngineConfig(max_model_len=256, block_size=4, num_speculative_tokens=num_speculative_tokens)
    )
    return engine.generate(prompts, params), engine.stats()


@pytest.mark.parametrize("num_seqs", [1, 2])
def test_drafted_greedy_tokens_are_the_plain_greedy_tokens(llama: LoadedModel, num_seqs: int) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True, logprobs=True)
    prompts = REPETITIVE[:num_seqs]
    plain, plain_stats = generate(llama, prompts, params, 0)
    drafted, stats = generate(llama, prompts, params, 3)
    for ours, reference in zip(drafted, plain, strict=True):
        assert ours.token_ids == reference.token_ids and len(ours.token_ids) == 40
        torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(reference.logprobs))
    assert stats.num_accepted_draft_tokens > 0 and stats.num_used_blocks == 0  # drafts ran; blocks all freed
    assert plain_stats.num_draft_tokens == 0


def test_stops_inside_an_accepted_draft_end_the_output_where_plain_decoding_does(llama: LoadedModel) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    tokens = generate(llama, REPETITIVE[:1], greedy, 0)[0][0].token_ids
    stop_at = tokens[len(tokens) // 2]
    for max_tokens, stop_ids in ((13, ()), (40, (stop_at,))):
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, stop_token_ids=stop_ids)
        (plain,), _ = generate(llama, REPETITIVE[:1], params, 0)
        (drafted,), _ = generate(llama, REPETITIVE[:1], params, 3)
        assert (drafted.token_ids, drafted.finish_reason, drafted.text) == (
            plain.token_ids,
            plain.finish_reason,
            plain.text,
        )
