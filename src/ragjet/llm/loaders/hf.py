"""Hugging Face model directories: config.json, *.safetensors (single or sharded), tokenizer files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ragjet.llm.config import ModelConfig
from ragjet.llm.loaders.weights import build_model, fuse_hf_tensors
from ragjet.llm.models.llama import LlamaForCausalLM
from ragjet.llm.tokenizer import Tokenizer


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from disk; ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_hf_config(directory: Path) -> ModelConfig:
    """ModelConfig from config.json, with generation_config.json's eos ids added (chat models stop on them)."""
    raw = read_json(directory / "config.json")
    generation = directory / "generation_config.json"
    if generation.is_file():
        eos = read_json(generation).get("eos_token_id")
        extra = eos if isinstance(eos, list) else [] if eos is None else [eos]
        current = raw.get("eos_token_id")
        current = current if isinstance(current, list) else [] if current is None else [current]
        raw = {**raw, "eos_token_id": list(dict.fromkeys(current + extra))}
    return ModelConfig.from_hf_config(raw)


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files, in the order of model.safetensors.index.json when the checkpoint is sharded."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        files = [directory / name for name in shards]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise FileNotFoundError(f"{directory}: shards listed in {index.name} are missing: {absent}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors weights (PyTorch .bin checkpoints are not supported)")
    return files


def iter_safetensors(files: list[Path], device: torch.device, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor, converted one at a time so peak memory stays near one tensor."""
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                yield name, handle.get_tensor(name).to(device=device, dtype=dtype)


def load_hf_dir(
    directory: Path, device: torch.device, dtype: torch.dtype
) -> tuple[LlamaForCausalLM, ModelConfig, Tokenizer]:
    """Model (weights fused, in ``dtype`` on ``device``), config and tokenizer of an HF directory.

    Errors: UnsupportedModelError (architecture), FileNotFoundError (weights/tokenizer missing),
    WeightsError (names or shapes do not match the config), ValueError (unreadable JSON).
    """
    config = load_hf_config(directory)
    tokenizer = Tokenizer.from_hf_dir(directory, extra_eos_ids=config.eos_token_ids)
    state = fuse_hf_tensors(iter_safetensors(safetensors_files(directory), device, dtype), config)
    return build_model(config, state, device, dtype), config, tokenizer
