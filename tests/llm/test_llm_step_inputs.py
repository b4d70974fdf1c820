"""A step's inputs are built on the host once: their layout, the padding a CUDA-graph replay adds, the decode
buckets, and a decode step that reads nothing back from the device but its sampled tokens (run on CPU under a
detector of every call that would be a host sync on CUDA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.engine.model_runner import (
    StepInputs,
    bucket_size,
    decode_buckets,
    pad_decode,
    prepare_step,
    to_step_tensors,
)
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.kernels import triton_attention
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams

# Tensor methods and functions that wait for the device on CUDA (a value read back, or a size that depends on data).
SYNCING = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero",
           "masked_select", "unique", "unique_consecutive"}  # fmt: skip


class SyncDetector(TorchFunctionMode):
    """Records each call that would make the host wait for the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in SYNCING or (name == "repeat_interleave" and "output_size" not in kwargs):
            self.syncs.append(name)
        return func(*args, **kwargs)


def sequence(prompt: list[int], computed: int, scheduled: int, table: list[int], draft: list[int] = ()) -> Sequence:
    seq = Sequence("r", list(prompt), len(prompt), SamplingParams(), None, max_len=100)  # type: ignore[arg-type]
    seq.num_computed_tokens, seq.num_scheduled_tokens, seq.block_table = computed, scheduled, list(table)
    seq.draft_ids = list(draft)
    return seq


def test_a_mixed_step_is_laid_out_as_the_layers_read_it() -> None:
    chunk = sequence(list(range(10, 20)), computed=4, scheduled=3, table=[7, 2, 5])  # a prompt chunk: no logits
    decode = sequence([1, 2, 3, 4, 5], computed=4, scheduled=1, table=[3, 9])
    verify = sequence([6, 7, 8], computed=2, scheduled=1, table=[4], draft=[8])  # a draft after the last token
    inputs = prepare_step([chunk, decode, verify], block_size=4)
    assert inputs.input_ids == [14, 15, 16, 5, 8, 8]
    assert inputs.positions == [4, 5, 6, 4, 2, 3]
    assert inputs.slot_mapping == [2 * 4 + 0, 2 * 4 + 1, 2 * 4 + 2, 9 * 4 + 0, 4 * 4 + 2, 4 * 4 + 3]
    assert (inputs.q_lens, inputs.context_lens, inputs.num_scored) == ([3, 1, 2], [7, 5, 4], [0, 1, 2])
    assert inputs.block_tables == [[7, 2, 5], [3, 9, 0], [4, 0, 0]] and inputs.fresh_seqs == [False] * 3
    assert inputs.scored_rows == [3, 4, 5] and not inputs.is_plain_decode
    step = to_step_tensors(inputs, torch.device("cpu"))
    assert step.input_ids.tolist() == inputs.input_ids and step.meta.block_tables.shape == (3, 3)
    assert step.meta.query_starts.tolist() == [0, 3, 4, 6] and step.meta.host_context_lens == [7, 5, 4]


def test_decode_buckets_and_the_padding_a_graph_replay_adds() -> None:
    assert decode_buckets(32) == [1, 2, 4, 8, 16, 32] and decode_buckets(12) == [1, 2, 4, 8, 12]
    assert decode_buckets(1) == [1]
    assert [bucket_size(n, [1, 2, 4, 8, 12]) for n in (1, 3, 5, 12)] == [1, 4, 8, 12]
    with pytest.raises(ValueError, match="exceed the largest decode bucket"):
        bucket_size(13, [1, 2, 4, 8, 12])
    decodes = [sequence([1, 2, 3, 4, 5], 4, 1, [3, 9]), sequence([6, 7], 1, 1, [4])]
    inputs = prepare_step(decodes, block_size=4)
    assert inputs.is_plain_decode
    padded = pad_decode(inputs, size=4, width=3, pad_block=11, block_size=4)
    assert padded.q_lens == [1] * 4 and padded.num_scored == [1] * 4 and padded.is_plain_decode
    assert padded.input_ids[:2] == inputs.input_ids and padded.context_lens == [5, 2, 1, 1]
    assert padded.slot_mapping[2:] == [44, 44]  # dummies write only into the pad block, which no sequence owns
    assert padded.block_tables == [[3, 9, 0], [4, 0, 0], [11, 0, 0], [11, 0, 0]]
    assert padded.scored_rows == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("logprobs", [False, True])
def test_a_decode_step_reads_back_only_its_sampled_tokens(
    llama: LoadedModel, monkeypatch: pytest.MonkeyPatch, torch_paths: None, logprobs: bool
) -> None:
    """The CUDA path's layers (attention by the Triton kernel, stubbed here: a kernel launch reads nothing back)
    and the greedy sampler: the tokens, and their logprobs when asked, are the step's only reads."""
    monkeypatch.setattr(triton_attention, "usable", lambda q: True)
    monkeypatch.setattr(triton_attention, "paged_attention", lambda q, *args: torch.zeros_like(q))
    engine = LLMEngine(llama, EngineConfig(max_model_len=128, block_size=4, num_speculative_tokens=0))
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, logprobs=logprobs)
    for prompt in ([5, 17, 99, 42], [300, 7], list(range(11, 24))):
        engine.add_request(prompt, params)
    engine.step()  # the prompts' prefill
    with SyncDetector() as detector:
        outputs = engine.step()
    assert len(outputs) == 3 and all(len(o.token_ids) == 2 for o in outputs)  # a decode step of all three
    assert detector.syncs == ["tolist"] * (1 + logprobs)


def test_the_detector_sees_the_reads_the_layers_used_to_make() -> None:
    lens = torch.tensor([3, 1, 2])
    with SyncDetector() as detector:
        int(lens.max())
        torch.repeat_interleave(torch.arange(3), lens)
        bool((lens < 2).any())
        torch.repeat_interleave(torch.arange(3), lens, output_size=6)  # given the size: no read
    assert detector.syncs == ["__int__", "repeat_interleave", "__bool__"]


def test_step_inputs_of_nothing_but_padding_replay_as_a_decode() -> None:
    empty = StepInputs()
    padded = pad_decode(empty, size=2, width=2, pad_block=5, block_size=4)
    assert padded.is_plain_decode and padded.block_tables == [[5, 0], [5, 0]]
