"""ModelConfig: the shape of a Llama-family decoder, read from an HF config.json or GGUF metadata.

One frozen dataclass serves Llama, Mistral, Qwen2 (bias on q/k/v) and Qwen3 (RMSNorm on q and k per
head); the model and the engine read only these fields, never the source dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# HF ``architectures`` entries (or ``model_type`` when a config has none) we can run.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
SUPPORTED_ROPE_TYPES = ("default", "llama3", "linear", "dynamic", "yarn")


class UnsupportedModelError(ValueError):
    """The model's architecture, RoPE scaling or weight format is one this engine cannot run."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    architecture: str  # "llama", "mistral", "qwen2" or "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None  # HF-style: {"rope_type": "llama3", "factor": 8.0, ...}
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # bias on the q/k/v projections (Qwen2); o_proj never has one
    qk_norm: bool  # per-head RMSNorm on q and k before RoPE (Qwen3)
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise UnsupportedModelError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise UnsupportedModelError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_scaling is not None:
            rope_type = self.rope_scaling.get("rope_type")
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise UnsupportedModelError(
                    f"rope scaling type {rope_type!r} is not supported (supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
                )

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf_config(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a parsed HF ``config.json`` (transformers 4.x and 5.x layouts).

        Raises UnsupportedModelError naming ``architectures`` for anything but Llama, Mistral, Qwen2 and
        Qwen3, and for features the model code does not implement (MLP bias, bias on o_proj).
        """
        architecture = _architecture(d)
        if d.get("mlp_bias"):
            raise UnsupportedModelError(f"{architecture}: mlp_bias=true is not supported")
        if architecture == "llama" and d.get("attention_bias"):
            raise UnsupportedModelError("llama: attention_bias=true (bias on o_proj) is not supported")
        num_heads = int(d["num_attention_heads"])
        rope_theta, rope_scaling = _rope(d)
        eos = d.get("eos_token_id")
        return cls(
            architecture=architecture,
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_layers=int(d["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(d.get("num_key_value_heads") or num_heads),
            head_dim=int(d.get("head_dim") or d["hidden_size"] // num_heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=_max_positions(d, architecture),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=architecture == "qwen2" or (architecture == "qwen3" and bool(d.get("attention_bias"))),
            qk_norm=architecture == "qwen3",
            bos_token_id=d.get("bos_token_id"),
            eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]),
        )


def _architecture(d: dict[str, Any]) -> str:
    names = d.get("architectures") or []
    for name in names:
        if name in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[name]
    model_type = d.get("model_type")
    if not names and model_type in SUPPORTED_ARCHITECTURES.values():
        return str(model_type)
    raise UnsupportedModelError(
        f"unsupported model: architectures={names} model_type={model_type!r} "
        f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
    )


def _rope(d: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """rope_theta and a normalised scaling dict; transformers 5 nests both in ``rope_parameters``."""
    params = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    theta = float(params.pop("rope_theta", d.get("rope_theta", 10000.0)))
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if rope_type == "default":
        return theta, None
    return theta, {"rope_type": rope_type, **params}


def _max_positions(d: dict[str, Any], architecture: str) -> int:
    limit = int(d.get("max_position_embeddings", 4096))
    # Sliding-window attention is not implemented: capping the length at the window keeps every
    # sequence we run inside the span where full attention and windowed attention agree.
    window = d.get("sliding_window")
    uses_window = d.get("use_sliding_window", architecture == "mistral")
    if uses_window and window:
        limit = min(limit, int(window))
    return limit
