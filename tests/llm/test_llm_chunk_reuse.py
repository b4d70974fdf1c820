"""Blend mode (chunk-KV reuse) on a tiny random-weight Llama: the reference cases where reused K/V must equal a
full prefill exactly, the re-rotation of keys, and the cache's promises (no stale K/V, budgets, invalidation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragjet.llm.engine.chunk_cache import ChunkKVCache
from ragjet.llm.engine.chunk_kv import rotate_keys
from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.layers.rotary import RotaryEmbedding, apply_rotary
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams
from ragjet.llm.segments import PromptSegments, Segment, split_at_chunks

SYSTEM = "<|im_start|>system\nAnswer from the sources.<|im_end|>\n<|im_start|>user\nSources:\n\n"
CHUNKS = {
    "bread": "Sourdough bread rises because wild yeast ferments the dough.",
    "lens": "A Fresnel lens focuses a lighthouse lamp into a beam.",
    "etna": "Mount Etna on Sicily is an active volcano.",
}
GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, logprobs=True)


def rag_prompt(order: list[str], question: str) -> PromptSegments:
    segments = [Segment(SYSTEM)]
    for number, tag in enumerate(order, 1):
        segments += [Segment(f"[{number}] {tag}\n"), Segment(CHUNKS[tag], tag), Segment("\n\n")]
    segments.append(Segment(f"Question: {question}<|im_end|>\n<|im_start|>assistant\n"))
    return PromptSegments(tuple(segments))


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)


def engine(loaded: LoadedModel, **config: object) -> LLMEngine:
    base = {"max_model_len": 256, "block_size": 4, "enable_prefix_caching": False, "chunk_reuse": "blend",
            "chunk_recompute_tokens": 0}  # fmt: skip
    return LLMEngine(loaded, EngineConfig(**{**base, **config}))  # type: ignore[arg-type]


def test_reused_kv_at_its_own_position_and_context_gives_the_full_prefill(llama: LoadedModel) -> None:
    """The same prompt twice: the second run imports both later chunks at their original positions, after the
    same text, so its K/V and therefore its tokens and logprobs equal the full prefill's."""
    prompt = rag_prompt(["bread", "lens", "etna"], "Why does bread rise?")
    full = LLMEngine(llama, EngineConfig(max_model_len=256, block_size=4, enable_prefix_caching=False))
    expected = full.generate([prompt], GREEDY)[0]
    blend = engine(llama)
    first, second = blend.generate([prompt], GREEDY)[0], blend.generate([prompt], GREEDY)[0]
    assert first.num_reused_tokens == 0
    assert second.num_reused_tokens > 0  # the three chunks' tokens, imported
    assert first.token_ids == second.token_ids == expected.token_ids
    assert second.logprobs == pytest.approx(expected.logprobs, abs=1e-4)


def test_a_chunk_moved_to_another_position_gets_correctly_rotated_keys(llama: LoadedModel) -> None:
    """Layer 0's keys depend only on a token and its position: after an import at a new position they must equal a
    full prefill's (later layers' keys differ by design, having seen other text)."""
    first, moved = rag_prompt(["bread", "lens"], "Why?"), rag_prompt(["etna", "lens"], "Why does a lens focus?")
    blend = engine(llama, num_speculative_tokens=0)
    blend.generate([first], GREEDY)
    ids, spans = moved.tokenize(blend.tokenizer.encode)
    lens = next(s for s in spans if s.tag == "lens")
    first_lens = next(s for s in first.tokenize(blend.tokenizer.encode)[1] if s.tag == "lens")
    assert lens.start != first_lens.start  # the chunk really moved

    def keys_of(eng: LLMEngine) -> torch.Tensor:
        rid = eng.add_request(moved, SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True))
        eng.step()  # prefill (blend: the import and one step)
        seq = eng._seqs[rid]
        runner = eng.model_runner
        slots = [seq.block_table[p // 4] * 4 + p % 4 for p in range(lens.start, lens.end)]
        return runner.kv_cache[0, 0].view(-1, *runner.kv_cache.shape[-2:])[slots].clone()

    reused = keys_of(blend)
    assert blend._seqs and next(iter(blend._seqs.values())).num_reused_tokens >= lens.num_tokens
    full = keys_of(LLMEngine(llama, EngineConfig(max_model_len=256, block_size=4, enable_prefix_caching=False)))
    torch.testing.assert_close(reused, full, atol=1e-5, rtol=1e-5)


def test_rotate_keys_composes_positions_with_a_scaled_table() -> None:
    """Rotating a key computed at position a by d gives the key at a + d, also where the table is scaled (YaRN)."""
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}
    rope = RotaryEmbedding(16, 10000.0, yarn, 128)
    raw = torch.randn(5, 2, 16)

    def at(position: int) -> torch.Tensor:
        cos, sin = rope(torch.full((5,), position))
        return apply_rotary(raw.clone(), cos, sin)

    torch.testing.assert_close(rotate_keys(at(7), rope.cos_sin_cache, 30), at(37), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotate_keys(at(37), rope.cos_sin_cache, -30), at(7), atol=1e-5, rtol=1e-5)


def test_everything_recomputed_is_a_full_prefill(llama: LoadedModel) -> None:
    """Recomputing every chunk token imports nothing: the outputs are the exact mode's."""
    prompt = rag_prompt(["lens", "etna"], "What is Etna?")
    blend = engine(llama, chunk_recompute_tokens=64)
    blend.generate([prompt], GREEDY)
    again = blend.generate([prompt], GREEDY)[0]
    full = LLMEngine(llama, EngineConfig(max_model_len=256, block_size=4)).generate([prompt], GREEDY)[0]
    assert again.num_reused_tokens == 0 and again.token_ids == full.token_ids


def test_an_edited_chunk_is_never_served_its_old_kv(llama: LoadedModel) -> None:
    blend = engine(llama)
    blend.generate([rag_prompt(["bread", "lens"], "Why?")], GREEDY)
    CHUNKS_EDITED = dict(CHUNKS, lens="A Fresnel lens of 1823 focuses the lamp into a beam.")
    edited = PromptSegments(tuple(Segment(CHUNKS_EDITED[s.chunk_tag], s.chunk_tag) if s.chunk_tag else s
                                  for s in rag_prompt(["bread", "lens"], "Why?").segments))  # fmt: skip
    out = blend.generate([edited], GREEDY)[0]
    bread = len(blend.tokenizer.encode(CHUNKS["bread"]))
    assert out.num_reused_tokens == bread  # bread reused; the edited lens chunk computed afresh
    assert blend.chunk_cache is not None and blend.chunk_cache.stats.num_entries == 3  # and stored beside the old


def test_forgotten_chunks_are_recomputed(llama: LoadedModel) -> None:
    blend = engine(llama)
    prompt = rag_prompt(["bread", "lens"], "Why?")
    blend.generate([prompt], GREEDY)
    assert blend.forget_chunks(["lens"]) == 1
    out = blend.generate([prompt], GREEDY)[0]
    assert out.num_reused_tokens == len(blend.tokenizer.encode(CHUNKS["bread"]))


def test_a_cache_too_small_for_any_chunk_reuses_nothing_and_answers_the_same(llama: LoadedModel) -> None:
    prompt = rag_prompt(["bread", "lens"], "Why?")
    tiny = engine(llama, chunk_cache_gb=1e-9)
    outs = [tiny.generate([prompt], GREEDY)[0] for _ in range(2)]
    full = LLMEngine(llama, EngineConfig(max_model_len=256, block_size=4)).generate([prompt], GREEDY)[0]
    assert [o.num_reused_tokens for o in outs] == [0, 0]
    assert all(o.token_ids == full.token_ids for o in outs)
    assert tiny.stats().chunk_cache_entries == 0


def test_a_blend_step_over_the_token_budget_falls_back_to_chunked_prefill(llama: LoadedModel) -> None:
    prompt = rag_prompt(["bread", "lens", "etna"], "Why does bread rise?")
    small = engine(llama, max_num_batched_tokens=16)
    first, second = small.generate([prompt], GREEDY)[0], small.generate([prompt], GREEDY)[0]
    assert second.num_reused_tokens == 0  # the glue alone is over 16 tokens: an ordinary chunked prefill
    assert first.token_ids == second.token_ids


def test_imported_blocks_never_enter_the_prefix_cache(llama: LoadedModel) -> None:
    """The prefix cache promises exact K/V: after a blend prompt, the same prompt in exact mode on the same pool
    may hit only the blocks before the first imported chunk."""
    prompt = rag_prompt(["bread", "lens"], "Why?")
    blend = engine(llama, enable_prefix_caching=True)
    blend.generate([prompt], GREEDY)
    reused = blend.generate([rag_prompt(["lens", "bread"], "Why?")], GREEDY)[0]
    assert reused.num_reused_tokens > 0
    again = blend.generate([rag_prompt(["lens", "bread"], "Why?")], GREEDY)[0]
    ids, spans = rag_prompt(["lens", "bread"], "Why?").tokenize(blend.tokenizer.encode)
    first_import = spans[1].start  # "lens" comes first: exact (a prefix computed after the system prompt)
    assert again.num_cached_tokens <= first_import


def test_speculative_decoding_after_a_blend_step_keeps_greedy_tokens(llama: LoadedModel) -> None:
    prompt = rag_prompt(["etna", "bread"], "What is Etna?")
    long = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    outs = []
    for spec in (0, 3):
        eng = engine(llama, num_speculative_tokens=spec)
        eng.generate([prompt], long)
        outs.append(eng.generate([prompt], long)[0])
    assert outs[0].num_reused_tokens > 0 and outs[0].token_ids == outs[1].token_ids


def test_a_blend_step_batched_with_decodes_leaves_every_sequence_as_it_would_be_alone(llama: LoadedModel) -> None:
    """A blend prompt admitted while another request decodes: the decode keeps its fast path and its tokens, and
    the blend prompt gets the tokens it gets alone after the same warm-up."""
    warm, blended = rag_prompt(["bread", "lens"], "Why?"), rag_prompt(["lens", "bread"], "How does a lens work?")
    decoding = rag_prompt(["etna"], "What is Etna?")
    long = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)

    def alone(prompt: PromptSegments) -> list[int]:
        eng = engine(llama)
        eng.generate([warm], GREEDY)
        return eng.generate([prompt], long)[0].token_ids

    eng = engine(llama)
    eng.generate([warm], GREEDY)
    first = eng.add_request(decoding, long)
    for _ in range(3):
        eng.step()  # the first request is decoding now
    second = eng.add_request(blended, long)
    final = {}
    while eng.has_unfinished():
        final |= {o.request_id: o for o in eng.step() if o.finished}
    assert final[second].num_reused_tokens > 0
    assert final[first].token_ids == alone(decoding) and final[second].token_ids == alone(blended)


def test_cache_keys_carry_the_model_identity() -> None:
    one, other = ChunkKVCache("model-a", 1 << 20), ChunkKVCache("model-b", 1 << 20)
    one.put([1, 2, 3], "c", "k", "v", 0, 10)
    assert one.get([1, 2, 3]) is not None
    assert other.get([1, 2, 3]) is None


def test_popular_chunks_survive_a_burst_of_one_offs() -> None:
    cache = ChunkKVCache("m", 300)
    cache.put([1], "popular", "k", "v", 0, 100)
    for _ in range(5):
        assert cache.get([1]) is not None
    for i in range(10):  # one-off chunks, each used once
        cache.put([100 + i], f"once-{i}", "k", "v", 0, 100)
    assert cache.contains([1])
    assert cache.stats.num_bytes <= 300 and cache.stats.num_evictions == 8
    assert not cache.put([7], "huge", "k", "v", 0, 301)  # never fits: refused, nothing evicted for it
    assert cache.stats.num_evictions == 8


def test_split_at_chunks_marks_each_chunk_and_joins_back() -> None:
    text = "sys [1] a\nalpha beta\n\n[2] b\ngamma\n\nQ"
    segments = split_at_chunks(text, [("a", "alpha beta"), ("missing", "zeta"), ("b", "gamma")])
    assert segments.text == text
    assert [(s.text, s.chunk_tag) for s in segments.segments if s.chunk_tag] == [("alpha beta", "a"), ("gamma", "b")]


def test_blend_is_refused_with_tensor_parallelism() -> None:
    with pytest.raises(ValueError, match="tensor_parallel_size 1"):
        EngineConfig(chunk_reuse="blend", tensor_parallel_size=2)
