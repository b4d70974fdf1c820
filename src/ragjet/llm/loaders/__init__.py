"""``load_model``: a packaged model name, a GGUF file or an HF directory -> a ready model and tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ragjet.device import default_dtype
from ragjet.llm.config import ModelConfig, UnsupportedModelError
from ragjet.llm.loaders.cache import load_gguf_cached
from ragjet.llm.loaders.gguf import is_gguf
from ragjet.llm.loaders.hf import is_hf_dir, load_hf_dir
from ragjet.llm.loaders.weights import WeightsError
from ragjet.llm.models.llama import LlamaForCausalLM
from ragjet.llm.tokenizer import Tokenizer
from ragjet.models import ModelNotFoundError, resolve_model

__all__ = ["LoadedModel", "ModelNotFoundError", "UnsupportedModelError", "WeightsError", "load_model"]


@dataclass
class LoadedModel:
    model: LlamaForCausalLM
    config: ModelConfig
    tokenizer: Tokenizer
    source: Path  # the GGUF file or HF directory the weights came from


def load_model(
    name_or_path: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load a model for inference (eval mode, no gradients needed).

    Args:
        name_or_path: a packaged model name ("SmolLM2-135M-Instruct"), a ``.gguf`` file or an HF
            directory (config.json + safetensors + tokenizer.json).
        device: where the weights live.
        dtype: weight dtype; None picks fp32 on CPU and bf16 on CUDA.
        cache_dir: where converted GGUF weights are kept (default ``Settings().cache_dir / "llm"``).

    Raises:
        ModelNotFoundError: unknown name or path.
        UnsupportedModelError: an architecture, RoPE scaling or quantisation we cannot run.
        WeightsError: weights that do not fit the config.
        ValueError / FileNotFoundError: a path that is neither a GGUF file nor an HF directory.
    """
    source = resolve_model(name_or_path)
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    if is_hf_dir(source):
        model, config, tokenizer = load_hf_dir(source, device, dtype)
    elif source.is_dir():
        raise FileNotFoundError(f"{source}: not an HF model directory (no config.json)")
    elif is_gguf(source):
        model, config, tokenizer = load_gguf_cached(source, device, dtype, cache_dir)
    else:
        raise ValueError(f"{source}: neither a GGUF file (no GGUF magic bytes) nor an HF model directory")
    return LoadedModel(model=model, config=config, tokenizer=tokenizer, source=source)
