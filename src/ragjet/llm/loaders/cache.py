"""Converted-weights cache: a GGUF is dequantised once; later loads read plain safetensors (~1 s).

Layout under ``cache_dir``::

    hashes.json                       {"<path>|<size>|<mtime_ns>": "<sha256>"}: files are hashed once
    <sha256>-<dtype>/model.safetensors  fused parameters in our names, in the load dtype
    <sha256>-<dtype>/tokenizer.json     the rebuilt tokenizer
    <sha256>-<dtype>/meta.json          format version, ModelConfig, chat template, eos/bos, byte sizes

An entry is written into a temporary directory and renamed into place, so readers never see half of
one; an entry that fails any check on load (missing file, wrong size, unparsable) is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tokenizers
import torch
from safetensors.torch import load_file, save_file

from ragjet.hardware import dtype_name
from ragjet.llm.config import ModelConfig
from ragjet.llm.loaders.gguf import config_from_gguf, iter_gguf_tensors, open_gguf, read_metadata
from ragjet.llm.loaders.gguf_tokenizer import tokenizer_from_gguf
from ragjet.llm.loaders.weights import build_model, fuse_hf_tensors
from ragjet.llm.models.llama import LlamaForCausalLM
from ragjet.llm.tokenizer import Tokenizer

FORMAT_VERSION = 1
_HASH_READ_BYTES = 4 << 20
_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    from ragjet.config import load_settings

    return load_settings().cache_dir / "llm"


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so an unchanged file is read only once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir / "hashes.json"
    index = _read_json_or_empty(index_path)
    if key in index:
        return str(index[key])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_READ_BYTES):
            digest.update(block)
    index[key] = digest.hexdigest()
    _write_atomic(index_path, json.dumps(index, indent=1))
    return index[key]


def load_gguf_cached(
    path: Path, device: torch.device, dtype: torch.dtype, cache_dir: Path | None
) -> tuple[LlamaForCausalLM, ModelConfig, Tokenizer]:
    """Model, config and tokenizer of a GGUF file, converting it on the first load only.

    A cache directory that cannot be created or written costs speed, never the load.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        entry = cache_dir / f"{file_sha256(path, cache_dir)}-{dtype_name(dtype)}"
    except OSError as exc:
        _log.warning("LLM cache %s is unusable (%s); converting %s without it", cache_dir, exc, path)
        config, state, tokenizer = convert_gguf(path, dtype)
        return build_model(config, state, device, dtype), config, tokenizer
    if entry.is_dir():
        try:
            config, state, tokenizer = _read_entry(entry)
            return build_model(config, state, device, dtype), config, tokenizer
        except Exception as exc:  # any failure to read an entry back (truncated, edited, foreign) means rebuild
            _log.warning("rebuilding corrupt LLM cache entry %s: %s", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    config, state, tokenizer = convert_gguf(path, dtype)
    _write_entry(entry, config, state, tokenizer, path)
    return build_model(config, state, device, dtype), config, tokenizer


def convert_gguf(path: Path, dtype: torch.dtype) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    """Dequantise a GGUF into fused parameters (CPU, ``dtype``) plus its config and tokenizer."""
    reader = open_gguf(path)
    meta = read_metadata(reader)
    config = config_from_gguf(meta, {t.name for t in reader.tensors})
    tokenizer = tokenizer_from_gguf(meta)
    state = fuse_hf_tensors(iter_gguf_tensors(reader, config, path, dtype), config)
    return config, state, tokenizer


def _write_entry(
    entry: Path, config: ModelConfig, state: dict[str, torch.Tensor], tokenizer: Tokenizer, source: Path
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"))
        tokenizer.backend.save(str(staging / "tokenizer.json"))
        meta = {
            "format_version": FORMAT_VERSION,
            "source": str(source),
            "config": dataclasses.asdict(config),
            "chat_template": tokenizer.chat_template,
            # The primary eos first: the Tokenizer gives it to chat templates as ``eos_token``.
            "eos_token_ids": sorted(tokenizer.eos_token_ids, key=lambda i: i != tokenizer.eos_token_id),
            "bos_token_id": tokenizer.bos_token_id,
            "sizes": {name: (staging / name).stat().st_size for name in ("model.safetensors", "tokenizer.json")},
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(staging, entry)
    except OSError as exc:
        # A cache we cannot write (read-only disk, a concurrent writer won the rename) costs speed only.
        _log.warning("could not store LLM cache entry %s: %s", entry, exc)
        shutil.rmtree(staging, ignore_errors=True)


def _read_entry(entry: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {meta.get('format_version')} != {FORMAT_VERSION}")
    for name, size in meta["sizes"].items():
        if (entry / name).stat().st_size != size:
            raise ValueError(f"{name} is {(entry / name).stat().st_size} bytes, expected {size}")
    raw = meta["config"]
    config = ModelConfig(**{**raw, "eos_token_ids": tuple(raw["eos_token_ids"])})
    backend = tokenizers.Tokenizer.from_file(str(entry / "tokenizer.json"))
    tokenizer = Tokenizer(backend, meta["chat_template"], meta["eos_token_ids"], meta["bos_token_id"])
    return config, load_file(str(entry / "model.safetensors")), tokenizer


def _read_json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
