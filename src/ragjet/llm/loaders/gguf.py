"""GGUF files (llama.cpp's format): metadata -> ModelConfig, tensors -> dequantised HF-named weights.

llama.cpp's converter permutes the rows of q/k projections of ``llama``-architecture models so that
RoPE can rotate adjacent pairs (interleaved layout); our RoPE rotates halves like HF, so those rows are
permuted back here. Qwen2/Qwen3 GGUFs are written without that permutation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragjet.llm.config import ModelConfig, UnsupportedModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3")

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)$")


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def open_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` (memory-mapped); ValueError naming the file when it cannot be parsed."""
    import gguf

    try:
        return gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises assorted errors on truncated or foreign files
        raise ValueError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from exc


def read_metadata(reader: Any) -> dict[str, Any]:
    """Every GGUF key/value, decoded to Python values (strings, numbers, lists)."""
    return {name: field.contents() for name, field in reader.fields.items()}


def config_from_gguf(meta: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
    """ModelConfig from ``<arch>.*`` metadata; bias, tying and q/k-norm follow from which tensors exist."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_GGUF_ARCHITECTURES)})"
        )
    if "rope_freqs.weight" in tensor_names:
        raise UnsupportedModelError("GGUF with per-frequency RoPE factors (rope_freqs, Llama 3.1) is not supported")

    def key(name: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise UnsupportedModelError(f"GGUF metadata lacks {arch}.{name}")
        return value

    num_heads, hidden = int(key("attention.head_count")), int(key("embedding_length"))
    eos = meta.get("tokenizer.ggml.eos_token_id")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(meta.get(f"{arch}.vocab_size") or len(meta["tokenizer.ggml.tokens"])),
        hidden_size=hidden,
        intermediate_size=int(key("feed_forward_length")),
        num_layers=int(key("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(key("attention.head_count_kv", num_heads)),
        head_dim=int(key("attention.key_length", hidden // num_heads)),
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_theta=float(key("rope.freq_base", 10000.0)),
        rope_scaling=_rope_scaling(meta, arch),
        max_position_embeddings=int(key("context_length")),
        tie_word_embeddings="output.weight" not in tensor_names,
        attention_bias="blk.0.attn_q.bias" in tensor_names,
        qk_norm="blk.0.attn_q_norm.weight" in tensor_names,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=() if eos is None else (int(eos),),
    )


def _rope_scaling(meta: dict[str, Any], arch: str) -> dict[str, Any] | None:
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    if kind == "none":
        return None
    scaling: dict[str, Any] = {"rope_type": kind, "factor": float(meta[f"{arch}.rope.scaling.factor"])}
    original = meta.get(f"{arch}.rope.scaling.original_context_length")
    if original is not None:
        scaling["original_max_position_embeddings"] = int(original)
    for gguf_key, hf_key in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
        if f"{arch}.rope.scaling.{gguf_key}" in meta:
            scaling[hf_key] = float(meta[f"{arch}.rope.scaling.{gguf_key}"])
    return scaling


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; unknown names raise."""
    match = _LAYER_TENSOR.match(gguf_name)
    if match and match.group(2) in _LAYER_NAMES:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    if base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.{kind}"
    raise UnsupportedModelError(f"GGUF tensor {gguf_name!r} has no counterpart in the Llama-family model")


def unpermute_rope_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Invert llama.cpp's q/k row permutation: per head, rows (i, j) interleaved -> halves (j, i).

    weight: (H * D, ...) with rows of head h at [h*D, (h+1)*D); returns the same shape.
    """
    head_dim = weight.shape[0] // num_heads
    grouped = weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])  # (H, D/2, 2, ...)
    return grouped.transpose(1, 2).reshape(weight.shape)  # (H, 2, D/2, ...) -> (H * D, ...)


def layer_weight_types(path: Path) -> set[str]:
    """Quantisation type names ("Q4_1", "F16", ...) of the decoder layers' matrices in a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.tensor_type.name for t in reader.tensors if t.name.startswith("blk.") and len(t.shape) == 2}


def dequantize(tensor: Any, path: Path) -> np.ndarray:
    """A reader tensor as float32 numpy in torch layout (rows, cols); clear error for unknown quant types."""
    import gguf

    try:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path}: tensor {tensor.name!r} uses quantisation {tensor.tensor_type.name} which cannot be "
            f"dequantised ({exc})"
        ) from exc
    array = np.asarray(array, dtype=np.float32)
    return array if array.flags.writeable else array.copy()


def iter_gguf_tensors(
    reader: Any, config: ModelConfig, path: Path, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, CPU tensor in ``dtype``) for every tensor, q/k rows restored for ``llama`` files."""
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        weight = torch.from_numpy(dequantize(tensor, path))
        if config.architecture == "llama" and tensor.name.endswith(("attn_q.weight", "attn_q.bias")):
            weight = unpermute_rope_rows(weight, config.num_heads)
        elif config.architecture == "llama" and tensor.name.endswith(("attn_k.weight", "attn_k.bias")):
            weight = unpermute_rope_rows(weight, config.num_kv_heads)
        yield name, weight.to(dtype)
