"""Our Llama-family model against transformers' own implementation on tiny random checkpoints:
logits of a cache-free forward (single and flattened batches) and greedy decoding token by token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ragjet.llm.config import ModelConfig, UnsupportedModelError
from ragjet.llm.layers.attention import uncached_metadata
from ragjet.llm.loaders import load_model

ARCHS = ["llama", "qwen2", "qwen3"]
PROMPTS = ["Sourdough bread rises", "A Fresnel lens focuses a lighthouse lamp", "Etna", "In 1823 the first"]


def hf_model(directory: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers_for_a_flattened_batch(arch: str, tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs[arch]), device="cpu")
    reference = hf_model(tiny_model_dirs[arch])
    torch.manual_seed(0)
    seqs = [torch.randint(0, 400, (n,)) for n in (17, 1, 40)]
    with torch.inference_mode():
        hidden = loaded.model(
            torch.cat(seqs),
            torch.cat([torch.arange(len(s)) for s in seqs]),
            uncached_metadata([len(s) for s in seqs], torch.device("cpu")),
        )  # (T, hidden)
        ours = loaded.model.compute_logits(hidden).split([len(s) for s in seqs])
        for seq, logits in zip(seqs, ours, strict=True):
            expected = reference(seq[None]).logits[0]  # (L, vocab)
            assert logits.dtype == torch.float32
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_tokens_identical_to_transformers_generate(
    arch: str, tiny_model_dirs: dict[str, Path], greedy: Callable[..., list[list[int]]]
) -> None:
    loaded = load_model(str(tiny_model_dirs[arch]), device="cpu")
    reference = hf_model(tiny_model_dirs[arch])
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    batched = greedy(loaded.model, prompts, 32)
    for prompt, ours in zip(prompts, batched, strict=True):
        with torch.inference_mode():
            out = reference.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False)
        expected = out[0, len(prompt) :].tolist()
        assert len(expected) == 32
        assert ours == expected
        assert greedy(loaded.model, [prompt], 32) == [expected]  # alone == within the batch


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "linear", "factor": 4.0},
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    ],
    ids=lambda s: s["rope_type"],
)
def test_rope_scaling_matches_transformers(
    scaling: dict, tmp_path: Path, write_tiny_llama: Callable[..., Path]
) -> None:
    write_tiny_llama(tmp_path, rope_parameters={"rope_theta": 10000.0, **scaling})
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.config.rope_scaling is not None and loaded.config.rope_scaling["rope_type"] == scaling["rope_type"]
    ids = torch.randint(0, 400, (200,))  # past original_max_position_embeddings, where scaling matters
    with torch.inference_mode():
        hidden = loaded.model(ids, torch.arange(200), uncached_metadata([200], torch.device("cpu")))
        expected = hf_model(tmp_path)(ids[None]).logits[0]
    torch.testing.assert_close(loaded.model.compute_logits(hidden), expected, atol=1e-4, rtol=1e-4)


def test_dynamic_ntk_uses_the_frequencies_transformers_uses_at_the_longest_length() -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from ragjet.llm.layers.rotary import rope_frequencies

    scaling = {"rope_type": "dynamic", "factor": 2.0}
    config = LlamaConfig(
        head_dim=16,
        hidden_size=64,
        num_attention_heads=4,
        max_position_embeddings=128,
        rope_parameters={"rope_theta": 10000.0, **scaling},
    )
    inv_freq, magnitude, length = rope_frequencies(16, 10000.0, scaling, 128)
    expected, _ = ROPE_INIT_FUNCTIONS["dynamic"](config, "cpu", seq_len=256)
    assert length == 256 and magnitude == 1.0
    torch.testing.assert_close(inv_freq, expected.float())


def test_bf16_model_keeps_its_dtype_and_agrees_with_fp32(tiny_model_dirs: dict[str, Path]) -> None:
    fp32 = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32).model
    bf16 = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.bfloat16).model
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    ids = torch.randint(0, 400, (24,))
    meta = uncached_metadata([24], torch.device("cpu"))
    with torch.inference_mode():
        hidden = bf16(ids, torch.arange(24), meta)
        low, high = bf16.compute_logits(hidden), fp32.compute_logits(fp32(ids, torch.arange(24), meta))
    assert hidden.dtype == torch.bfloat16 and low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low, high, dim=-1).min() > 0.99


BASE_HF = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def test_config_reads_transformers_4_layout_and_mistral_window() -> None:
    legacy = {
        **BASE_HF,
        "rope_theta": 500000.0,
        "rope_scaling": {"type": "linear", "factor": 2.0},
        "eos_token_id": [3, 4],
    }
    config = ModelConfig.from_hf_config(legacy)
    assert config.rope_theta == 500000.0 and config.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert config.eos_token_ids == (3, 4) and config.head_dim == 16
    mistral = ModelConfig.from_hf_config(
        {**BASE_HF, "architectures": ["MistralForCausalLM"], "max_position_embeddings": 32768, "sliding_window": 4096}
    )
    assert mistral.architecture == "mistral" and mistral.max_position_embeddings == 4096


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "GPT2LMHeadModel"),
        ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "longrope"),
        ({"num_key_value_heads": 3}, "multiple of num_kv_heads"),
        ({"mlp_bias": True}, "mlp_bias"),
    ],
)
def test_config_rejects_what_the_model_cannot_run(change: dict, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        ModelConfig.from_hf_config({**BASE_HF, **change})
