"""The fused CPU decode op (models/cpu_decode.py, kernels/cpu_decode.cpp) against the Python layers it replaces:
the same ops in the same order, so the same hidden states, bit for bit, for decode and verify steps of one and
several sequences; and it declines every model and step it does not cover."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.layers.attention import AttentionMetadata
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.models.cpu_decode import FusedCpuDecode
from ragjet.llm.models.llama import LlamaForCausalLM
from ragjet.llm.quantize import compute_dtype, quantize_model
from ragjet.llm.sampling_params import SamplingParams

if shutil.which("c++") is None or shutil.which("ninja") is None:
    pytest.skip("no C++ compiler or ninja: the kernels cannot be built here", allow_module_level=True)

BLOCK = 16
NUM_BLOCKS = 24


@pytest.fixture(scope="module")
def served(smollm2: LoadedModel) -> LlamaForCausalLM:
    """SmolLM2 as the engine serves it on the CPU (int4 layer linears behind dense prefill copies, in the level's
    compute dtype, with the kernels enabled for it) with a paged cache of its own."""
    model = quantize_model(copy.deepcopy(smollm2.model), "int4", dense_prefill=True)
    assert isinstance(model, LlamaForCausalLM)
    dtype = compute_dtype(model)
    assert cpu_kernels.load(dtype), "the kernels failed to build: see the log"
    for layer in model.model.layers:
        attn = layer.self_attn.attn
        attn.k_cache = torch.zeros(NUM_BLOCKS, BLOCK, attn.num_kv_heads, attn.head_dim, dtype=dtype)
        attn.v_cache = torch.zeros_like(attn.k_cache)
    return model


def step_meta(starts: list[int], ends: list[int], tables: list[list[int]]) -> AttentionMetadata:
    """Sequence b brings positions starts[b]..ends[b] - 1, its blocks in tables[b]."""
    slots = [tables[b][p // BLOCK] * BLOCK + p % BLOCK for b in range(len(starts)) for p in range(starts[b], ends[b])]
    return AttentionMetadata(
        q_lens=[e - s for s, e in zip(starts, ends, strict=True)], context_lens=torch.tensor(ends),
        slot_mapping=torch.tensor(slots), block_tables=torch.tensor(tables),
        fresh_seqs=[s == 0 for s in starts],
    )  # fmt: skip


def run(model: LlamaForCausalLM, tokens: list[list[int]], starts: list[int], tables: list[list[int]], fused: bool):
    ends = [s + len(t) for s, t in zip(starts, tokens, strict=True)]
    ids = torch.tensor([t for seq in tokens for t in seq])
    positions = torch.tensor([p for s, e in zip(starts, ends, strict=True) for p in range(s, e)])
    model.model.fused_decode = FusedCpuDecode.build(model.model) if fused else None
    meta = step_meta(starts, ends, tables)
    with torch.inference_mode():
        if fused:  # the op covers this step: the forward below runs it, not the Python layers
            assert model.model.fused_decode is not None
            assert model.model.fused_decode.handles(model.model.embed_tokens(ids), meta)
        return model(ids, positions, meta)


@pytest.mark.parametrize("new_tokens", [[1], [4], [1, 1, 1], [2, 3]], ids=["decode", "verify", "3-decode", "mixed"])
def test_fused_layers_return_what_the_python_layers_return(
    served: LlamaForCausalLM, smollm2: LoadedModel, new_tokens: list[int]
) -> None:
    question = "why is the sky blue, and what colour is the sea at dusk?"
    ids = [smollm2.tokenizer.encode(f"Question {b}: {question}") for b in range(len(new_tokens))]
    tables = [[3 * b + 2, 3 * b, 3 * b + 1] for b in range(len(ids))]  # scattered blocks, room for 48 tokens each
    run(served, ids, [0] * len(ids), tables, fused=False)  # the prompts' K/V, through the Python path
    step = [[(7 * b + j) % 400 + 100 for j in range(n)] for b, n in enumerate(new_tokens)]
    starts = [len(p) for p in ids]
    assert FusedCpuDecode.build(served.model) is not None
    python = run(served, step, starts, tables, fused=False)
    fused = run(served, step, starts, tables, fused=True)  # rewrites the same K/V, then attends the same way
    torch.testing.assert_close(fused, python, rtol=0, atol=0)


def test_it_declines_the_steps_the_python_path_takes_differently(served: LlamaForCausalLM) -> None:
    fused = FusedCpuDecode.build(served.model)
    assert fused is not None
    dtype = compute_dtype(served)
    x = torch.zeros(1, 576, dtype=dtype)
    tables = [[0, 1]]
    assert fused.handles(x, step_meta([10], [11], tables))
    assert not fused.handles(x.half(), step_meta([10], [11], tables))  # not the int4 layers' compute dtype
    assert not fused.handles(x, step_meta([0], [1], tables))  # a fresh prompt: causal attention over its own keys
    assert not fused.handles(torch.zeros(9, 576, dtype=dtype), step_meta([10], [19], tables))  # 9 queries
    assert not fused.handles(torch.zeros(10, 576, dtype=dtype), step_meta([10] * 10, [11] * 10, tables * 10))
    gaps = step_meta([10], [11], tables)
    gaps.query_positions = torch.tensor([10])  # a blend step's scattered positions
    assert not fused.handles(x, gaps)


def test_it_declines_models_it_does_not_cover(smollm2: LoadedModel, tiny_model_dirs) -> None:
    int8 = quantize_model(copy.deepcopy(smollm2.model), "int8")
    assert isinstance(int8, LlamaForCausalLM)
    for layer in int8.model.layers:
        layer.self_attn.attn.k_cache = layer.self_attn.attn.v_cache = torch.zeros(1)
    assert FusedCpuDecode.build(int8.model) is None  # int8 linears
    no_cache = quantize_model(copy.deepcopy(smollm2.model), "int4")
    assert isinstance(no_cache, LlamaForCausalLM) and FusedCpuDecode.build(no_cache.model) is None
    qwen3 = load_model(str(tiny_model_dirs["qwen3"]), device="cpu", dtype=torch.float32).model
    assert isinstance(qwen3, LlamaForCausalLM) and FusedCpuDecode.build(qwen3.model) is None  # q/k norms


def test_an_engine_generates_the_same_tokens_with_and_without_it(smollm2: LoadedModel) -> None:
    """Greedy, with speculative drafts on (verify steps), two sequences decoding together."""
    model = quantize_model(copy.deepcopy(smollm2.model), "int4", dense_prefill=True)
    loaded = LoadedModel(model, smollm2.config, smollm2.tokenizer, smollm2.source)
    prompts = ["List the planets of the solar system in order.", "Explain what a hash table is, briefly."]
    params = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)
    tokens = {}
    for fused in (False, True):
        config = EngineConfig(max_num_seqs=2, max_model_len=512, num_speculative_tokens=3, fused_cpu_decode=fused)
        engine = LLMEngine(loaded, config)
        assert (engine.model_runner.model.model.fused_decode is not None) == fused  # llm.fused_cpu_decode decides
        tokens[fused] = [out.token_ids for out in engine.generate(prompts, params)]
        engine.close()
    assert tokens[True] == tokens[False]
