"""The fused CPU kernels against the torch paths they replace: same values (fp32 tightly, bf16 to a rounding),
on the shapes the engine gives them (views, GQA groups, ragged contexts, scattered blocks), and on SmolLM2."""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ragjet.hardware import cpu_policy
from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.layers.attention import AttentionMetadata, paged_attention
from ragjet.llm.layers.norm import RMSNorm
from ragjet.llm.layers.rotary import RotaryEmbedding, apply_rotary
from ragjet.llm.loaders import LoadedModel
from ragjet.llm.quantize import quantize_model
from ragjet.llm.sampling_params import SamplingParams

if shutil.which("c++") is None or shutil.which("ninja") is None:
    pytest.skip("no C++ compiler or ninja: the kernels cannot be built here", allow_module_level=True)

OPS = torch.ops.ragjet_cpu
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    assert cpu_kernels.load(), "the kernels failed to build: see the log"


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """fp32: float rounding only; bf16: the kernels round once where torch rounds after every op."""
    tol = 1e-5 if got.dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), expected.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm_matches_the_add_and_the_norm(dtype: torch.dtype) -> None:
    x, residual = torch.randn(7, 96).to(dtype), torch.randn(7, 96).to(dtype)
    weight = (1 + 0.1 * torch.randn(96)).to(dtype)
    out, summed = OPS.add_rms_norm(x, residual, weight, 1e-6)
    torch.testing.assert_close(summed, x + residual, rtol=0, atol=0)  # the residual stream: rounded as torch does
    close(out, F.rms_norm(x + residual, (96,), weight, 1e-6))
    out, nothing = OPS.add_rms_norm(x, None, weight, 1e-6)
    close(out, F.rms_norm(x, (96,), weight, 1e-6))
    assert nothing.numel() == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_in_place_matches_rotate_half_on_a_view_of_the_qkv_row(dtype: torch.dtype) -> None:
    rope = RotaryEmbedding(32, 10000.0, None, 256).to(dtype)
    cos, sin = rope(torch.tensor([0, 3, 17, 255]))
    qkv = torch.randn(4, 7 * 32).to(dtype)
    qk = qkv[:, : 5 * 32].view(4, 5, 32)  # q and k heads, strided like the model's
    reference = torch.addcmul(qk * cos, qk.roll(16, dims=-1), sin)  # apply_rotary's torch formula
    v_before = qkv[:, 5 * 32 :].clone()
    OPS.rotary_(qk, cos, sin)
    close(qk, reference)
    torch.testing.assert_close(qkv[:, 5 * 32 :], v_before, rtol=0, atol=0)  # v is not touched
    if dtype == torch.bfloat16:  # the layer function takes the kernel, in place
        fresh = torch.randn(4, 5, 32).to(dtype)
        expected = torch.addcmul(fresh * cos, fresh.roll(16, dims=-1), sin)
        assert apply_rotary(fresh, cos, sin).data_ptr() == fresh.data_ptr()
        close(fresh, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("q_heads", "kv_heads", "head_dim"), [(9, 3, 64), (8, 2, 128), (4, 4, 32)])
@pytest.mark.parametrize("q_lens", [[1] * 6, [4, 1, 2, 4, 3, 1]], ids=["decode", "verify"])
def test_paged_attention_matches_the_gathering_torch_path(
    dtype: torch.dtype, q_heads: int, kv_heads: int, head_dim: int, q_lens: list[int], torch_paths: None
) -> None:
    torch.manual_seed(0)
    num_blocks, block_size = 40, 4
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype)
    lens = torch.tensor([13, 1, 30, 4, 22, 9])  # ragged, one sequence of a single token
    tables = torch.stack([torch.randperm(num_blocks)[:8] for _ in lens])  # scattered blocks
    tokens = sum(q_lens)
    q = torch.randn(tokens, q_heads + kv_heads, head_dim).to(dtype)[:, :q_heads]  # a strided view, as in the model
    empty = torch.empty(0, dtype=torch.long)
    meta = AttentionMetadata(q_lens=q_lens, context_lens=lens, slot_mapping=empty, block_tables=tables)
    expected = paged_attention(q.contiguous().float(), k_cache.float(), v_cache.float(), meta, head_dim**-0.5)
    # Enough sequences for one work item per sequence, and few enough for one per kv head: both splits.
    for seqs in (len(lens), 1):
        starts = torch.tensor([0, *itertools.accumulate(q_lens[:seqs])])
        got = OPS.paged_attention(q[: starts[-1]], k_cache, v_cache, tables[:seqs], lens[:seqs], starts, head_dim**-0.5)
        close(got, expected[: starts[-1]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_verify_query_scores_exactly_as_the_decode_query_at_its_position(dtype: torch.dtype) -> None:
    """Speculative decoding is exact only if a query's output does not depend on how many draft keys follow it:
    for every context length (every place in a 16-key group), a 4-query verify call's first query equals,
    bit for bit, the 1-query decode call at that position over the same pool."""
    torch.manual_seed(0)
    num_blocks, block_size, kv_heads, head_dim = 12, 4, 3, 64
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype)
    table = torch.randperm(num_blocks)[None]
    q = torch.randn(4, 9, head_dim).to(dtype)
    for position in range(40):
        decode = OPS.paged_attention(q[:1], k_cache, v_cache, table, torch.tensor([position + 1]),
                                     torch.tensor([0, 1]), head_dim**-0.5)  # fmt: skip
        verify = OPS.paged_attention(q, k_cache, v_cache, table, torch.tensor([position + 4]),
                                     torch.tensor([0, 4]), head_dim**-0.5)  # fmt: skip
        assert torch.equal(verify[:1], decode), f"position {position}"


def test_the_layers_use_the_kernels_on_the_dtypes_an_engine_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cpu_kernels._state, "dtypes", frozenset({torch.bfloat16}))
    norm = RMSNorm(16, 1e-6).to(torch.bfloat16)
    assert cpu_kernels.usable(torch.ones(1, dtype=torch.bfloat16)) and not cpu_kernels.usable(torch.ones(1))
    x = torch.randn(3, 16).to(torch.bfloat16)
    torch.testing.assert_close(norm(x), OPS.add_rms_norm(x, None, norm.weight, 1e-6)[0], rtol=0, atol=0)
    assert cpu_kernels.load(torch.float32) and cpu_kernels.usable(torch.ones(1))  # an fp32 engine's (generic)
    assert not cpu_kernels.load(torch.float16)  # no kernels for it: the torch paths


def test_the_build_is_made_for_the_policy_level_and_says_so() -> None:
    isa = cpu_policy().isa
    assert cpu_kernels.build_directory().name.startswith(f"{isa}-")
    assert f"for {isa}" in cpu_kernels.status()
    assert "-march=native" not in cpu_kernels.cflags()


def test_smollm2_decode_logits_agree_with_and_without_the_kernels(
    smollm2: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The served CPU configuration (int4 + dense prefill, bf16) on a paged cache: one decode step after a
    prompt gives the same logits both ways, up to bf16 rounding, and the same greedy token."""
    model = quantize_model(copy.deepcopy(smollm2.model), "int4", dense_prefill=True)
    messages = [{"role": "user", "content": "Name three primary colours."}]
    ids = smollm2.tokenizer.encode(smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    block_size = 16
    blocks = torch.randperm(8)[: -(-len(ids) // block_size) + 1]  # scattered, with room for the next token
    for layer in model.model.layers:
        attn = layer.self_attn.attn
        attn.k_cache = torch.zeros(8, block_size, attn.num_kv_heads, attn.head_dim, dtype=torch.bfloat16)
        attn.v_cache = torch.zeros_like(attn.k_cache)

    def step(start: int, end: int) -> torch.Tensor:
        slots = torch.tensor([int(blocks[p // block_size]) * block_size + p % block_size for p in range(start, end)])
        meta = AttentionMetadata([end - start], torch.tensor([end]), slots, blocks[None], fresh_seqs=[start == 0])
        with torch.inference_mode():
            return model.compute_logits(model(torch.tensor(ids[start:end]), torch.arange(start, end), meta)[-1:])

    monkeypatch.setitem(cpu_kernels._state, "loaded", False)
    ids.append(int(step(0, len(ids)).argmax()))  # the prompt, through the torch paths
    without = step(len(ids) - 1, len(ids))
    monkeypatch.setitem(cpu_kernels._state, "loaded", True)
    with_kernels = step(len(ids) - 1, len(ids))  # rewrites the new token's K/V, then attends through the kernel
    assert (with_kernels - without).abs().max() < 0.05 * without.abs().max()
    assert with_kernels.argmax() == without.argmax()


def test_speculative_decoding_gives_plain_greedy_tokens_in_the_served_cpu_configuration(
    smollm2: LoadedModel,
) -> None:
    """A verify step (1 + 3 draft tokens) attends through the same kernel as a decode step and, for one sequence,
    multiplies by the same int4/int8 weights, so its tokens match plain greedy decoding in bf16 too; through
    the torch attention path these two prompts diverged at token 13. (Several sequences' verify rows can cross
    to the dense weights, where a near-tie may then flip.)"""
    from benchmarks.llm_prompts import rag_prompts

    model = quantize_model(copy.deepcopy(smollm2.model), "int4", dense_prefill=True)
    loaded = LoadedModel(model, smollm2.config, smollm2.tokenizer, smollm2.source)
    prompts = [rag_prompts(smollm2.tokenizer, 4, 300)[i] for i in (1, 3)]
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    tokens = {}
    for drafts in (0, 3):
        engine = LLMEngine(loaded, EngineConfig(max_num_seqs=2, max_model_len=1024, num_speculative_tokens=drafts))
        tokens[drafts] = [engine.generate([prompt], params)[0].token_ids for prompt in prompts]
        assert drafts == 0 or engine.stats().num_accepted_draft_tokens > 0
    assert tokens[3] == tokens[0]


def test_an_unwritable_kernel_cache_leaves_the_torch_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RAGJET_KERNEL_CACHE", str(blocker / "kernels"))  # mkdir under a file fails
    monkeypatch.setitem(cpu_kernels._state, "loaded", False)
    monkeypatch.setitem(cpu_kernels._state, "status", cpu_kernels.status())  # restored after the failed attempt
    assert cpu_kernels._build.__wrapped__() is False  # the uncached function: a fresh attempt
    assert not cpu_kernels.loaded() and "the LLM runs without them" in caplog.text
    assert cpu_kernels.status().startswith("unavailable: build failed")


def test_without_a_compiler_the_kernels_are_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler-ragjet")
    monkeypatch.setitem(cpu_kernels._state, "loaded", False)
    monkeypatch.setitem(cpu_kernels._state, "status", cpu_kernels.status())  # restored after the failed attempt
    assert cpu_kernels._build.__wrapped__() is False
    assert not cpu_kernels.loaded() and "no C++ compiler" in caplog.text
    assert cpu_kernels.status() == "unavailable: no C++ compiler (no-such-compiler-ragjet) found"


def test_a_stale_build_lock_left_by_an_interrupted_build_is_removed(caplog: pytest.LogCaptureFixture) -> None:
    lock = cpu_kernels.build_directory() / "lock"  # where torch's build keeps its lock
    lock.write_text("")
    old = time.time() - 2 * cpu_kernels.STALE_LOCK_S
    os.utime(lock, (old, old))
    results: list[bool] = []
    attempt = threading.Thread(target=lambda: results.append(cpu_kernels._build.__wrapped__()), daemon=True)
    attempt.start()
    attempt.join(timeout=120)  # without the removal torch would wait on the lock forever
    assert results == [True]
    assert not lock.exists() and "stale kernel build lock" in caplog.text
