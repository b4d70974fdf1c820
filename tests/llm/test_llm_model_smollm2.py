"""The real SmolLM2-135M-Instruct from its Q4_1 GGUF: same greedy tokens as transformers running the same
dequantised weights, and coherent answers (which only hold if the q/k permutation was undone)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from ragjet.llm.config import ModelConfig
from ragjet.llm.loaders import LoadedModel

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write one sentence about the ocean.",
]


def hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our fused parameters -> transformers' separate q/k/v and gate/up projections."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if ".qkv_proj." in name:
            parts = tensor.split([config.q_size, config.kv_size, config.kv_size])
            out.update({name.replace("qkv_proj", f"{p}_proj"): t for p, t in zip("qkv", parts, strict=True)})
        elif ".gate_up_proj." in name:
            gate, up = tensor.chunk(2)
            out.update({name.replace("gate_up_proj", "gate_proj"): gate, name.replace("gate_up_proj", "up_proj"): up})
        else:
            out[name] = tensor
    return out


@pytest.fixture(scope="module")
def hf_twin(smollm2: LoadedModel) -> torch.nn.Module:
    """transformers' LlamaForCausalLM holding exactly our dequantised weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = smollm2.config
    hf_config = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim,
        rms_norm_eps=c.rms_norm_eps,
        rope_parameters={"rope_theta": c.rope_theta, "rope_type": "default"},
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = LlamaForCausalLM(hf_config)
    missing, unexpected = model.load_state_dict(hf_state_dict(smollm2.model.state_dict(), c), strict=False, assign=True)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    model.generation_config.eos_token_id = None
    return model.eval()


def chat_prompt(loaded: LoadedModel, question: str) -> list[int]:
    return loaded.tokenizer.encode(loaded.tokenizer.apply_chat_template([{"role": "user", "content": question}]))


def test_greedy_tokens_match_transformers_on_the_same_weights(
    smollm2: LoadedModel, hf_twin: torch.nn.Module, greedy: Callable[..., list[list[int]]]
) -> None:
    prompts = [chat_prompt(smollm2, q) for q in QUESTIONS]
    ours = greedy(smollm2.model, prompts, 32)
    for prompt, tokens in zip(prompts, ours, strict=True):
        with torch.inference_mode():
            out = hf_twin.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert tokens == out[0, len(prompt) :].tolist()


def test_answers_are_coherent(smollm2: LoadedModel, greedy: Callable[..., list[list[int]]]) -> None:
    (tokens,) = greedy(smollm2.model, [chat_prompt(smollm2, QUESTIONS[0])], 12)
    answer = smollm2.tokenizer.decode(tokens)
    assert "Paris" in answer, answer


def test_the_engine_batched_with_a_shared_prefix_matches_transformers(
    smollm2: LoadedModel, hf_twin: torch.nn.Module
) -> None:
    """Paged KV, continuous batching and prefix-cache hits (the shared chat header) change no token."""
    from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
    from ragjet.llm.sampling_params import SamplingParams

    prompts = [chat_prompt(smollm2, q) for q in QUESTIONS]
    engine = LLMEngine(smollm2, EngineConfig(max_model_len=512, block_size=8))
    params = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)
    outputs = engine.generate([prompts[0]], params) + engine.generate(prompts[1:], params)
    for prompt, out in zip(prompts, outputs, strict=True):
        with torch.inference_mode():
            expected = hf_twin.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert out.token_ids == expected[0, len(prompt) :].tolist()
    assert outputs[-1].num_cached_tokens > 0 and engine.stats().prefix_cache_hits > 0
