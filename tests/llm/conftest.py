"""LLM fixtures: tiny random-weight HF model directories written by transformers itself (the oracle),
a GGUF written from one of them the way llama.cpp's converter does, and the real SmolLM2 loaded once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING_TEXT = [
    "Sourdough bread rises because wild yeast ferments the dough. Mount Etna on Sicily is an active volcano.",
    "A Fresnel lens focuses a lighthouse lamp into a beam. Basaltic lava is runny and flows quickly.",
    "In 1823 the first Fresnel lens was lit; 42 lighthouses followed by 1850.",
]
TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def train_tiny_tokenizer() -> object:
    """A real byte-level BPE (400 ids) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    return tokenizer


def write_hf_model(directory: Path, model: torch.nn.Module, tokenizer: object, eos_token: str | None) -> Path:
    """save_pretrained + tokenizer.json + tokenizer_config.json (ChatML template)."""
    model.save_pretrained(directory, safe_serialization=True)  # type: ignore[attr-defined]
    tokenizer.save(str(directory / "tokenizer.json"))  # type: ignore[attr-defined]
    config = {"chat_template": CHATML_TEMPLATE, "eos_token": eos_token, "bos_token": None}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def randomize_biases(model: torch.nn.Module) -> None:
    """transformers initialises biases to zero, which would hide a dropped bias."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0, 0.5)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> object:
    return train_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: object) -> Path:
    """Tied-embedding Llama whose eos is <|im_end|> (what the engine's tests run on)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    eos = tiny_tokenizer.token_to_id("<|im_end|>")  # type: ignore[attr-defined]
    config = LlamaConfig(vocab_size=400, tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos, **TINY_SHAPE)
    directory = tmp_path_factory.mktemp("tiny-llama")
    return write_hf_model(directory, LlamaForCausalLM(config), tiny_tokenizer, "<|im_end|>")


def _tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object, arch: str) -> Path:
    """Untied model without eos, so HF generate never stops early (the oracle for greedy decoding)."""
    import transformers

    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    }[arch]
    extra = {"head_dim": 32} if arch == "qwen3" else {}  # Qwen3 decouples head_dim from hidden/heads
    torch.manual_seed(1)
    config = config_cls(
        vocab_size=400, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, **TINY_SHAPE, **extra
    )
    model = model_cls(config)
    randomize_biases(model)
    return write_hf_model(tmp_path_factory.mktemp(f"tiny-{arch}"), model, tokenizer, None)


@pytest.fixture(scope="session")
def write_tiny_llama(tiny_tokenizer: object) -> Callable[..., Path]:
    """``write_tiny_llama(directory, **LlamaConfig overrides)`` -> a random tiny Llama directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def write(directory: Path, **overrides: object) -> Path:
        torch.manual_seed(2)
        config = LlamaConfig(**{"vocab_size": 400, **TINY_SHAPE, **overrides})
        return write_hf_model(directory, LlamaForCausalLM(config), tiny_tokenizer, None)

    return write


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: object) -> dict[str, Path]:
    return {arch: _tiny_dir(tmp_path_factory, tiny_tokenizer, arch) for arch in ("llama", "qwen2", "qwen3")}


def permute_like_llama_cpp(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """What convert_hf_to_gguf does to q/k rows: per head, halves (j, i) -> interleaved (i, j)."""
    return (
        weight.reshape(num_heads, 2, weight.shape[0] // num_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


GGUF_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_gguf(hf_dir: Path, path: Path, quant: Callable[[str, np.ndarray], tuple[np.ndarray, object]]) -> Path:
    """Write an HF Llama directory as a llama-architecture GGUF, as llama.cpp's converter would.

    ``quant(name, array)`` returns (data, raw GGML type or None) for each tensor.
    """
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((hf_dir / "config.json").read_text())
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base((config.get("rope_parameters") or config)["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) for m in tokenizer["model"]["merges"]])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_chat_template(CHATML_TEMPLATE)

    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    for name, array in load_file(str(hf_dir / "model.safetensors")).items():
        gguf_name = name.replace("model.embed_tokens", "token_embd").replace("model.norm", "output_norm")
        gguf_name = gguf_name.replace("lm_head", "output").replace("model.layers.", "blk.")
        for hf_part, gguf_part in GGUF_NAMES.items():
            gguf_name = gguf_name.replace(hf_part, gguf_part)
        kind = gguf_name.split(".")[-2]
        if kind in heads:
            array = permute_like_llama_cpp(array, heads[kind])
        data, raw_type = quant(gguf_name, array.astype(np.float32))
        writer.add_tensor(gguf_name, data, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def greedy_uncached(model: torch.nn.Module, prompts: list[list[int]], num_tokens: int) -> list[list[int]]:
    """Greedy decoding by re-running the cache-free forward over the growing sequences, all of them
    flattened into one forward per step (the slow reference for batching and for the engine)."""
    from ragjet.llm.layers.attention import uncached_metadata

    seqs = [list(p) for p in prompts]
    with torch.inference_mode():
        for _ in range(num_tokens):
            lens = [len(s) for s in seqs]
            ids = torch.tensor([t for s in seqs for t in s])  # (T,)
            positions = torch.cat([torch.arange(n) for n in lens])  # (T,)
            hidden = model(ids, positions, uncached_metadata(lens, ids.device))  # (T, hidden)
            last = torch.tensor(lens).cumsum(0) - 1  # (B,) each sequence's final token
            for seq, token in zip(seqs, model.compute_logits(hidden[last]).argmax(-1).tolist(), strict=True):
                seq.append(token)
    return [s[len(p) :] for s, p in zip(seqs, prompts, strict=True)]


@pytest.fixture(scope="session")
def greedy() -> Callable[[torch.nn.Module, list[list[int]], int], list[list[int]]]:
    return greedy_uncached


@pytest.fixture(scope="session")
def gguf_writer() -> Callable[[Path, Path, Callable[[str, np.ndarray], tuple[np.ndarray, object]]], Path]:
    return write_gguf


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="session")
def smollm2(llm_cache_dir: Path) -> object:
    """The packaged SmolLM2-135M-Instruct (Q4_1 GGUF), converted once per session, fp32 on the CPU."""
    from ragjet.llm.loaders import load_model

    return load_model("SmolLM2-135M-Instruct", device="cpu", dtype=torch.float32, cache_dir=llm_cache_dir)


@pytest.fixture
def torch_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers' pure-torch paths even when an earlier test has loaded the fused CPU kernels."""
    from ragjet.llm.kernels import cpu as cpu_kernels

    monkeypatch.setitem(cpu_kernels._state, "loaded", False)
