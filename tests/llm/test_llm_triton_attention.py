"""The Triton paged-attention kernel against dense attention over the paged cache, for every kind of step the
engine schedules (decode, prefill over a cached prefix, chunked prefill, speculative verify, all mixed), and
the engine's greedy tokens through it against its torch paths.

Without a GPU the kernel runs in Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET before triton is imported); on a GPU the same tests run it compiled.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from test_llm_quantize import assert_dense

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.kernels import triton_attention
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams

if not triton_attention.available():
    pytest.skip("triton is not installed (a test extra)", allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_attention.INTERPRETED:
    pytest.skip("no GPU and triton was imported without TRITON_INTERPRET=1", allow_module_level=True)

STEPS = {  # (q_lens, context_lens): every sequence's new queries sit at the end of its context
    "decode": ([1, 1, 1, 1], [9, 1, 30, 17]),
    "cached-prefix-prefill": ([13], [30]),
    "chunked-prefill": ([8, 8], [8, 24]),
    "verify": ([4, 1, 4], [12, 5, 31]),
    "mixed": ([1, 13, 4, 1], [40, 13, 7, 2]),
}


def run_kernel(
    q_lens: list[int], context_lens: list[int], heads: tuple[int, int, int], block_size: int, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    q_heads, kv_heads, head_dim = heads
    num_blocks = 24
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype)
    v_cache = torch.randn_like(k_cache)
    width = -(-max(context_lens) // block_size) + 1  # one spare column: tables are padded past the last block
    tables = torch.stack([torch.randperm(num_blocks)[:width] for _ in q_lens])  # scattered blocks
    # A strided view of a fused qkv row, as the model hands it over.
    q = torch.randn(sum(q_lens), q_heads + 2 * kv_heads, head_dim).to(dtype)[:, :q_heads]
    starts = torch.tensor([0, *itertools.accumulate(q_lens)])
    on = lambda t: t.to(DEVICE)  # noqa: E731
    out = triton_attention.paged_attention(
        on(q), on(k_cache), on(v_cache), on(tables), on(torch.tensor(context_lens)), on(starts), max(q_lens), 0.25
    )
    assert out.dtype == dtype and out.shape == q.shape
    assert_dense(out.cpu(), q, k_cache, v_cache, tables, q_lens, context_lens)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("heads", [(9, 3, 64), (8, 2, 128), (4, 4, 32)], ids=["gqa3", "gqa4-d128", "mha"])
def test_the_kernel_matches_dense_attention_in_fp32(step: str, heads: tuple[int, int, int]) -> None:
    run_kernel(*STEPS[step], heads, block_size=4, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("step", ["decode", "mixed"])
def test_the_kernel_matches_dense_attention_in_half_precision(step: str, dtype: torch.dtype) -> None:
    run_kernel(*STEPS[step], (9, 3, 64), block_size=16, dtype=dtype)


def test_a_query_block_longer_than_one_program_is_split_across_programs() -> None:
    """A 200-query prefill over 3 query heads a KV head needs several programs along the query axis."""
    run_kernel([200], [230], (6, 2, 32), block_size=16, dtype=torch.float32)


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)


def generate(loaded: LoadedModel, prompts: list[list[int]], **config: object) -> list[list[int]]:
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    engine = LLMEngine(loaded, EngineConfig(**{"max_model_len": 128, "block_size": 4, **config}))  # type: ignore[arg-type]
    return [out.token_ids for out in engine.generate(prompts, params)]


@pytest.mark.skipif(DEVICE != "cpu", reason="forces the kernel onto CPU tensors, for the interpreter")
def test_the_engine_gives_its_torch_path_tokens_through_the_kernel(
    llama: LoadedModel, monkeypatch: pytest.MonkeyPatch, torch_paths: None
) -> None:
    """Prefix-cache hits, chunked prefill and speculative verify steps, attended by the kernel (as on CUDA)."""
    shared = list(range(40, 62))
    prompts = [shared + [7, 8], shared + [9], [5, 6, 5, 6, 5, 6, 5]]
    config = dict(max_num_batched_tokens=16, num_speculative_tokens=2)
    expected = generate(llama, prompts, **config)
    calls: list[int] = []
    kernel = triton_attention.paged_attention

    def counted(*args: object) -> torch.Tensor:
        calls.append(1)
        return kernel(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(triton_attention, "usable", lambda q: True)
    monkeypatch.setattr(triton_attention, "paged_attention", counted)
    assert generate(llama, prompts, **config) == expected
    assert calls, "the layers did not take the kernel"
