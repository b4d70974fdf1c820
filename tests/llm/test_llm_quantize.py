"""Quantisation (int8/int4 weight-only, bf16) against the fp32 model, and the decode fast paths against
references: int8/int4 linears vs fp32 matmul (bounded error), int4 groups vs a llama.cpp Q4_1 grid (exact),
quantised tiny Llama vs fp32 (logits and greedy), paged attention (decode and mixed steps) vs dense
per-sequence attention."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ragjet.hardware import cpu_policy
from ragjet.llm.layers.attention import Attention, AttentionMetadata, paged_attention, uncached_metadata
from ragjet.llm.layers.linear import (
    Int4WeightOnlyLinear,
    Int8Embedding,
    Int8WeightOnlyLinear,
    dequantized_linear,
    quantize_int4,
    quantize_int8,
)
from ragjet.llm.layers.prefill_linear import (
    DENSE_MIN_ROWS,
    LM_HEAD_DENSE_MIN_ROWS,
    DenseWeight,
    PrefillDenseLinear,
)
from ragjet.llm.loaders import load_model
from ragjet.llm.quantize import auto_quantization, compute_dtype, quantize_model

LLM_DTYPE, DENSE_DTYPE = cpu_policy().llm_dtype, cpu_policy().dense_dtype  # this host's (or a narrowed run's)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path) -> nn.Module:
    """The tied-embedding tiny Llama in fp32 (tests quantise copies of it)."""
    return load_model(str(tiny_llama_dir), device="cpu", dtype=torch.float32).model


def full_logits(model: nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        hidden = model(torch.tensor(ids), torch.arange(len(ids)), uncached_metadata([len(ids)], torch.device("cpu")))
        return model.compute_logits(hidden)  # (L, vocab) float32


def test_quantize_int8_error_is_at_most_half_a_step_per_channel() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 96) * torch.logspace(-3, 1, 48)[:, None]  # rows of very different magnitude
    q, scales = quantize_int8(weight, torch.float32)
    assert q.dtype == torch.int8 and q.abs().max() == 127 and scales.shape == (48,)
    error = (q.float() * scales[:, None] - weight).abs()
    assert (error <= scales[:, None] / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 0.01), (torch.bfloat16, 0.02)])
def test_int8_linear_close_to_fp32_matmul(dtype: torch.dtype, bound: float) -> None:
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 64), torch.randn(96)
    layer = Int8WeightOnlyLinear.from_float(weight, bias, dtype)
    for num_tokens in (1, 7):
        x = torch.randn(num_tokens, 64)
        out = layer(x.to(dtype))
        assert out.shape == (num_tokens, 96) and out.dtype == dtype
        assert relative_error(out, F.linear(x, weight, bias)) < bound
        # Exactly the dequantised weight's product, up to the compute dtype's rounding.
        assert relative_error(out, F.linear(x.to(dtype), layer.dequantize(), layer.bias)) < 0.01


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_portable_dequantised_path_matches_the_fused_cpu_kernel(dtype: torch.dtype, tolerance: float) -> None:
    torch.manual_seed(0)
    q, scales = quantize_int8(torch.randn(40, 32), dtype)
    x = torch.randn(3, 32, dtype=dtype)
    fused = torch._weight_int8pack_mm(x, q, scales)
    torch.testing.assert_close(dequantized_linear(x, q, scales), fused, atol=tolerance, rtol=tolerance)


def test_quantize_int8_rejects_a_weight_that_is_not_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"2-D \(out, in\) weight, got shape \(4,\)"):
        quantize_int8(torch.ones(4), torch.float32)


def q4_1_grid(num_rows: int, num_cols: int) -> torch.Tensor:
    """A weight on llama.cpp's Q4_1 grid: ``d * q + m`` per block of 32 inputs, q in 0..15 (both ends used)."""
    torch.manual_seed(0)
    d = torch.rand(num_rows, num_cols // 32, 1) * 0.05 + 0.01
    m = -torch.rand(num_rows, num_cols // 32, 1)
    q = torch.randint(0, 16, (num_rows, num_cols // 32, 32))
    q[..., 0], q[..., 1] = 0, 15
    return (d * q + m).reshape(num_rows, num_cols)


def test_quantize_int4_recovers_a_q4_1_grid_and_bounds_any_other_weight() -> None:
    weight = q4_1_grid(24, 96)
    q, scales_and_zeros = quantize_int4(weight, 32, torch.float32)
    assert q.dtype == torch.int32 and q.shape == (24, 96) and scales_and_zeros.shape == (3, 24, 2)
    scale, zero = (scales_and_zeros[..., i].T.repeat_interleave(32, dim=1) for i in (0, 1))  # (N, K) each
    torch.testing.assert_close((q - 8) * scale + zero, weight, atol=1e-6, rtol=0)  # the same grid, exactly
    other = torch.randn(24, 96)
    q, scales_and_zeros = quantize_int4(other, 32, torch.float32)
    scale, zero = (scales_and_zeros[..., i].T.repeat_interleave(32, dim=1) for i in (0, 1))
    assert ((q - 8) * scale + zero - other).abs().le(scale / 2 * (1 + 1e-5)).all()


def test_int4_linear_matches_its_dequantised_weight_and_the_fp32_matmul() -> None:
    weight, bias = q4_1_grid(96, 64), torch.randn(96)
    layer = Int4WeightOnlyLinear.from_float(weight, bias, torch.bfloat16)
    relative_grid_error = (layer.dequantize().float() - weight).abs().max() / weight.abs().max()
    assert relative_grid_error < 0.01  # bf16 rounding of scale, zero and the product
    for num_tokens in (1, 7):
        x = torch.randn(num_tokens, 64, dtype=torch.bfloat16)
        out = layer(x)
        assert out.shape == (num_tokens, 96) and out.dtype == torch.bfloat16
        assert relative_error(out, F.linear(x.float(), weight, bias)) < 0.02
        assert relative_error(out, F.linear(x, layer.dequantize(), layer.bias)) < 0.01


def test_quantize_int4_rejects_inputs_not_divisible_by_the_group() -> None:
    with pytest.raises(ValueError, match=r"in divisible by 32, got shape \(4, 40\)"):
        quantize_int4(torch.ones(4, 40), 32, torch.float32)


@pytest.mark.parametrize("mode", ["int2", "", "INT8"])
def test_unknown_mode_is_a_clear_error(tiny: nn.Module, mode: str) -> None:
    with pytest.raises(ValueError, match=rf"quantization mode '{mode}' is not one of 'none', 'int8', 'int4', 'bf16'"):
        quantize_model(copy.deepcopy(tiny), mode)  # type: ignore[arg-type]


def test_none_leaves_the_model_as_it_was(tiny: nn.Module) -> None:
    model = copy.deepcopy(tiny)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    assert quantize_model(model, "none") is model
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)


def test_int8_replaces_every_linear_and_keeps_the_tied_embedding_tied(tiny: nn.Module, tiny_llama_dir: Path) -> None:
    model = quantize_model(copy.deepcopy(tiny), "int8")
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, Int8WeightOnlyLinear)
    assert isinstance(layer.mlp.gate_up_proj, Int8WeightOnlyLinear)
    # One int8 table serves both ends of the model.
    assert isinstance(model.lm_head, Int8WeightOnlyLinear) and isinstance(model.model.embed_tokens, Int8Embedding)
    assert model.model.embed_tokens.weight is model.lm_head.weight and model.lm_head.weight.dtype == torch.int8
    # CPU computes in the policy's dtype (bf16 where the int8 kernel is vectorised); norms follow.
    assert model.model.norm.weight.dtype == LLM_DTYPE and model.lm_head.scales.dtype == LLM_DTYPE
    ids = torch.tensor([3, 17, 399])
    rows = model.model.embed_tokens(ids)
    assert rows.shape == (3, 64) and rows.dtype == LLM_DTYPE
    assert relative_error(rows, tiny.model.embed_tokens.weight[ids]) < 0.02


@pytest.mark.parametrize("arch", ["tied-llama", "qwen2"])
def test_int8_tiny_model_logits_close_and_greedy_mostly_identical(
    arch: str,
    tiny: nn.Module,
    tiny_model_dirs: dict[str, Path],
    greedy: Callable[..., list[list[int]]],
) -> None:
    """Tied embeddings (one int8 table), and an untied head with q/k/v biases (Qwen2)."""
    if arch == "qwen2":
        tiny = load_model(str(tiny_model_dirs[arch]), device="cpu", dtype=torch.float32).model
    model = quantize_model(copy.deepcopy(tiny), "int8")
    assert compute_dtype(tiny) == torch.float32 and compute_dtype(model) == LLM_DTYPE
    assert isinstance(model.lm_head, Int8WeightOnlyLinear)
    embed_type = Int8Embedding if arch == "tied-llama" else nn.Embedding
    assert type(model.model.embed_tokens) is embed_type
    ids = list(range(1, 120))
    expected, logits = full_logits(tiny, ids), full_logits(model, ids)
    assert logits.dtype == torch.float32
    assert relative_error(logits, expected) < 0.05
    assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.9
    kl = F.kl_div(logits.log_softmax(-1), expected.log_softmax(-1), log_target=True, reduction="batchmean")
    assert kl < 0.01
    prompts = [ids[:20], ids[40:47]]
    reference, quantised = greedy(tiny, prompts, 16), greedy(model, prompts, 16)
    same = sum(a == b for r, q in zip(reference, quantised, strict=True) for a, b in zip(r, q, strict=True))
    assert same >= 0.75 * 32


def test_int4_quantises_the_layers_keeps_an_int8_tied_head_and_stays_close(
    tiny: nn.Module, greedy: Callable[..., list[list[int]]]
) -> None:
    model = quantize_model(copy.deepcopy(tiny), "int4")
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, Int4WeightOnlyLinear) and isinstance(
        layer.mlp.down_proj, Int4WeightOnlyLinear
    )
    assert isinstance(model.lm_head, Int8WeightOnlyLinear) and model.model.embed_tokens.weight is model.lm_head.weight
    assert compute_dtype(model) == LLM_DTYPE
    ids = list(range(1, 120))
    expected, logits = full_logits(tiny, ids), full_logits(model, ids)
    kl = F.kl_div(logits.log_softmax(-1), expected.log_softmax(-1), log_target=True, reduction="batchmean")
    assert relative_error(logits, expected) < 0.1 and kl < 0.02  # random weights: off the Q4_1 grid
    prompts = [ids[:20], ids[40:47]]
    reference, quantised = greedy(tiny, prompts, 16), greedy(model, prompts, 16)
    same = sum(a == b for r, q in zip(reference, quantised, strict=True) for a, b in zip(r, q, strict=True))
    assert same >= 0.6 * 32


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dense_prefill_uses_the_dense_weight_for_many_tokens_and_the_quantised_one_for_few(
    tiny: nn.Module, mode: str
) -> None:
    plain = quantize_model(copy.deepcopy(tiny), mode)  # type: ignore[arg-type]
    model = quantize_model(copy.deepcopy(tiny), mode, dense_prefill=True)  # type: ignore[arg-type]
    qkv, head = model.model.layers[0].self_attn.qkv_proj, model.lm_head
    assert isinstance(qkv, PrefillDenseLinear) and qkv.min_rows == DENSE_MIN_ROWS
    assert isinstance(head, PrefillDenseLinear) and head.min_rows == LM_HEAD_DENSE_MIN_ROWS
    assert isinstance(head.quantized, Int8WeightOnlyLinear) and head.quantized is model.model.embed_tokens.head
    reference_qkv = tiny.model.layers[0].self_attn.qkv_proj
    cases = [  # (dense-capable layer, float weight and bias it stands for, the plain quantised layer)
        (qkv, reference_qkv.weight, reference_qkv.bias, plain.model.layers[0].self_attn.qkv_proj),
        (head, tiny.model.embed_tokens.weight, None, plain.lm_head),  # the tied head multiplies by the embedding
    ]
    with torch.inference_mode():
        for layer, weight, bias, quantised in cases:
            many = torch.randn(layer.min_rows, weight.shape[1]).to(LLM_DTYPE)
            dense_bias = None if bias is None else bias.to(DENSE_DTYPE)
            # Exactly the dense product in the policy's dense dtype (no rounding of weights), up to the GEMM's
            # summation order, rounded back to the compute dtype.
            expected = F.linear(many.to(DENSE_DTYPE), weight.to(DENSE_DTYPE), dense_bias).to(LLM_DTYPE)
            torch.testing.assert_close(layer(many), expected)
            few = many[: layer.min_rows - 1]
            torch.testing.assert_close(layer(few), quantised(few), rtol=0, atol=0)
    ids = list(range(1, 120))  # one prefill step of 119 tokens: dense layers, closer to fp32 than int-only
    expected_logits = full_logits(tiny, ids)
    assert relative_error(full_logits(model, ids), expected_logits) < relative_error(
        full_logits(plain, ids), expected_logits
    )


def test_a_dense_weight_is_prepacked_for_onednn_in_bf16_where_the_policy_says_so() -> None:
    """Where bf16 GEMMs are native; elsewhere (an AVX2 CPU) oneDNN's bf16 reorder raises, so it is never asked."""
    weight, prepack = torch.randn(48, 32), cpu_policy().prepack_dense
    packed, plain = DenseWeight(weight.bfloat16(), None, prepack), DenseWeight(weight, None, prepack)
    assert packed.prepacked == prepack and not plain.prepacked
    x = torch.randn(5, 32)
    torch.testing.assert_close(plain(x), F.linear(x, weight), rtol=0, atol=0)
    torch.testing.assert_close(packed(x.bfloat16()), F.linear(x.bfloat16(), weight.bfloat16()))


def test_int4_refuses_a_model_off_the_cpu(tiny_llama_dir: Path) -> None:
    model = load_model(str(tiny_llama_dir), device="meta", dtype=torch.float32).model
    with pytest.raises(ValueError, match="int4 quantization runs on the CPU only, not on meta"):
        quantize_model(model, "int4")


def as_q4_1(name: str, array: np.ndarray) -> tuple[np.ndarray, object]:
    import gguf

    if array.ndim == 1 or not name.startswith("blk."):  # norms F32; embedding Q8_0, as llama.cpp writes Q4_1
        kind = gguf.GGMLQuantizationType.Q8_0
        return (array, None) if array.ndim == 1 else (gguf.quants.quantize(array, kind), kind)
    return gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q4_1), gguf.GGMLQuantizationType.Q4_1


def test_auto_serves_int4_for_a_q4_1_gguf_on_the_cpu_only(
    tiny_llama_dir: Path, gguf_writer: Callable[..., Path], tmp_path: Path
) -> None:
    path = gguf_writer(tiny_llama_dir, tmp_path / "q4_1.gguf", as_q4_1)
    vectorised = cpu_policy().weight_only_kernels  # scalar weight-only kernels (generic): dense fp32 instead
    assert auto_quantization(torch.device("cpu"), path) == ("int4" if vectorised else "none")
    assert auto_quantization(torch.device("cuda"), path) == "none"
    assert auto_quantization(torch.device("cpu"), tiny_llama_dir) == ("int8" if vectorised else "none")  # HF dir
    fp32 = load_model(str(path), cache_dir=tmp_path).model
    model = quantize_model(copy.deepcopy(fp32), "int4")
    for ours, theirs in zip(model.model.layers, fp32.model.layers, strict=True):  # the file's grid, held exactly
        expected = theirs.mlp.gate_up_proj.weight
        grid_error = (ours.mlp.gate_up_proj.dequantize().float() - expected).abs().max() / expected.abs().max()
        assert grid_error < 0.01


def test_bf16_casts_everything_and_stays_close(tiny: nn.Module) -> None:
    model = quantize_model(copy.deepcopy(tiny), "bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = list(range(1, 60))
    assert relative_error(full_logits(model, ids), full_logits(tiny, ids)) < 0.03


def test_int8_model_runs_a_paged_decode_step(tiny: nn.Module) -> None:
    """The KV cache takes the compute dtype; a decode step through it matches the cache-free forward."""
    model = quantize_model(copy.deepcopy(tiny), "int8")
    ids = list(range(5, 25))
    with torch.inference_mode():
        reference = model(torch.tensor(ids), torch.arange(len(ids)), uncached_metadata([len(ids)], torch.device("cpu")))
    block_size, num_blocks = 8, 3
    for layer in model.model.layers:
        attn = layer.self_attn.attn
        shape = (num_blocks, block_size, attn.num_kv_heads, attn.head_dim)
        attn.k_cache = torch.zeros(shape, dtype=compute_dtype(model))
        attn.v_cache = torch.zeros_like(attn.k_cache)
    table = torch.tensor([[2, 0, 1]])  # blocks out of order, as a block manager hands them out
    slots = [int(table[0, p // block_size]) * block_size + p % block_size for p in range(len(ids))]

    def step(start: int, end: int) -> torch.Tensor:
        meta = AttentionMetadata([end - start], torch.tensor([end]), torch.tensor(slots[start:end]), table)
        with torch.inference_mode():
            return model(torch.tensor(ids[start:end]), torch.arange(start, end), meta)

    step(0, len(ids) - 1)
    last = step(len(ids) - 1, len(ids))
    torch.testing.assert_close(last, reference[-1:], atol=0.05, rtol=0.05)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int, scale: float) -> torch.Tensor:
    """One sequence's new queries (Lq, Hq, D) at positions offset.. against all its keys (L, Hkv, D)."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (L, Hq, D)
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale  # (Hq, Lq, L)
    visible = torch.arange(k.shape[0])[None, :] <= offset + torch.arange(q.shape[0])[:, None]  # (Lq, L)
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)  # (Lq, Hq, D)


def assert_dense(
    out: torch.Tensor,
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    tables: torch.Tensor,
    q_lens: list[int],
    context_lens: list[int],
) -> None:
    """`out` equals dense attention of each sequence's queries over its keys read through its block table."""
    block_size, kv_heads, dim = k_cache.shape[1:]
    flat_k, flat_v = k_cache.view(-1, kv_heads, dim), v_cache.view(-1, kv_heads, dim)
    expected = []
    for b, (q_seq, ctx) in enumerate(zip(q.split(q_lens), context_lens, strict=True)):
        slots = tables[b, torch.arange(ctx) // block_size] * block_size + torch.arange(ctx) % block_size
        expected.append(
            dense_attention(q_seq.float(), flat_k[slots].float(), flat_v[slots].float(), ctx - len(q_seq), 0.25)
        )
    tolerance = 1e-5 if out.dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), torch.cat(expected), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("q_lens", [[1], [1, 1, 1], [3, 1, 5]], ids=["decode-1", "decode-3", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paged_attention_matches_dense_attention(q_lens: list[int], dtype: torch.dtype, torch_paths: None) -> None:
    torch.manual_seed(0)
    num_heads, num_kv_heads, head_dim, block_size = 6, 2, 16, 4
    context_lens = [9, 14, 5][: len(q_lens)]
    k_cache = torch.randn(12, block_size, num_kv_heads, head_dim, dtype=dtype)
    v_cache = torch.randn_like(k_cache)
    tables = torch.randperm(12)[: 4 * len(q_lens)].view(len(q_lens), 4)  # (B, 4) scattered blocks
    q = torch.randn(sum(q_lens), num_heads, head_dim, dtype=dtype)
    meta = AttentionMetadata(q_lens, torch.tensor(context_lens), torch.empty(0, dtype=torch.long), tables)
    out = paged_attention(q, k_cache, v_cache, meta, scale=0.25)
    assert meta.paged_index is not None  # built once, reused by the next layer
    assert paged_attention(q, k_cache, v_cache, meta, scale=0.25).equal(out)

    assert_dense(out, q, k_cache, v_cache, tables, q_lens, context_lens)


def test_a_fresh_prompt_beside_decoding_sequences_attends_as_the_paged_path_does(torch_paths: None) -> None:
    """A mixed step: prompt 0 starts from nothing (attends over its own keys), 1 and 2 decode through the pool."""
    torch.manual_seed(0)
    heads, kv_heads, dim, block_size = 6, 2, 16, 4
    attn = Attention(heads, kv_heads, dim, 0.25)
    attn.k_cache = torch.randn(12, block_size, kv_heads, dim)
    attn.v_cache = torch.randn_like(attn.k_cache)
    q_lens, context_lens = [7, 1, 1], [7, 10, 3]
    tables = torch.tensor([[3, 5, 0], [1, 7, 9], [4, 0, 0]])
    slots = [int(tables[0, p // block_size]) * block_size + p % block_size for p in range(7)]
    slots += [int(tables[1, 2]) * block_size + 1, int(tables[2, 0]) * block_size + 2]  # positions 9 and 2
    q, k, v = torch.randn(9, heads, dim), torch.randn(9, kv_heads, dim), torch.randn(9, kv_heads, dim)

    def attend(fresh_seqs: list[bool] | None) -> torch.Tensor:
        meta = AttentionMetadata(q_lens, torch.tensor(context_lens), torch.tensor(slots), tables, fresh_seqs)
        return attn(q, k, v, meta)

    torch.testing.assert_close(attend([True, False, False]), attend(None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_step_of_every_kind_of_sequence_attends_as_dense_attention(dtype: torch.dtype) -> None:
    """A fresh prompt, a decode, a verify-sized step and a prefill chunk after history, in one step: each part
    takes its own path (own keys; kernel or one-query path; gather + SDPA) and all equal the dense reference."""
    torch.manual_seed(0)
    heads, kv_heads, dim, block_size = 6, 2, 16, 4
    attn = Attention(heads, kv_heads, dim, 0.25)
    attn.k_cache = torch.randn(24, block_size, kv_heads, dim, dtype=dtype)
    attn.v_cache = torch.randn_like(attn.k_cache)
    q_lens, context_lens = [6, 1, 4, 12], [6, 10, 9, 20]
    tables = torch.randperm(24)[:20].view(4, 5)
    positions = [
        (b, p) for b, (n, ctx) in enumerate(zip(q_lens, context_lens, strict=True)) for p in range(ctx - n, ctx)
    ]
    new_slots = [int(tables[b, p // block_size]) * block_size + p % block_size for b, p in positions]
    q = torch.randn(sum(q_lens), heads, dim, dtype=dtype)
    k, v = torch.randn(sum(q_lens), kv_heads, dim, dtype=dtype), torch.randn(sum(q_lens), kv_heads, dim, dtype=dtype)
    meta = AttentionMetadata(
        q_lens, torch.tensor(context_lens), torch.tensor(new_slots), tables, [True, False, False, False]
    )
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # a silent fall to SDPA's math path (~10x slower) fails here
        out = attn(q, k, v, meta)
    assert meta.plan is not None and len(meta.plan.fresh_spans) == 1 and len(meta.plan.pool_parts) == 2
    assert_dense(out, q, attn.k_cache, attn.v_cache, tables, q_lens, context_lens)
