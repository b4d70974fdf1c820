"""Sentence embeddings: BERT token states, mean-pooled over real tokens, L2-normalised.

Texts are sorted by token length and batched in that order, so a batch pads to similar lengths and
little compute goes to padding; results are returned in the caller's order. What runs a batch is a
backend: `TorchEmbedder` (our BertEncoder in torch, the default) or `OnnxEmbedder` (an ONNX export run
by ONNX Runtime, fp32 or int8), chosen by `Embedder.load(backend=...)`.

Every precision of one model shares its `model_id` (name plus weights digest): bf16, fp32 and int8 are
approximations of the same function (cosine to fp32 >= 0.9998 for bf16, measured bounds for int8 in
tests/embed/test_onnx.py), so a collection ingested at one precision is searched at another without a
re-ingest, as a collection built in bf16 on an AMX host is already served in fp32 on an AVX2 host.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from rich.progress import Progress
from tokenizers import Tokenizer

from ragjet.models import resolve_model

if TYPE_CHECKING:
    from ragjet.embed.onnx_embedder import OnnxOptions

Backend = Literal["torch", "onnxruntime"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Int8Scheme = Literal["static", "dynamic"]  # how the onnxruntime backend quantises: embed/onnx_quant.py
NUM_CALIBRATION_CHUNKS = 1024  # static INT8: chunks its activation scales are calibrated on (seed 003's advice)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
DEFAULT_BATCH = 64
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")


class Embedder(ABC):
    """Texts to (N, dim) float32 unit vectors; a subclass runs one batch of token ids (`_forward`)."""

    def __init__(self, tokenizer: Tokenizer, model_id: str, max_seq_len: int, dim: int, precision: str):
        """`precision`: what the backend runs, as reports show it ("bfloat16", "int8 static", ...)."""
        self.tokenizer, self.model_id, self.max_seq_len, self.dim = tokenizer, model_id, max_seq_len, dim
        self.precision = precision
        self._encoder = Tokenizer.from_str(tokenizer.to_str())  # truncating copy; `tokenizer` stays as loaded
        self._encoder.enable_truncation(max_seq_len)
        self._encoder.no_padding()

    @classmethod
    def load(
        cls,
        name_or_path: str = "all-MiniLM-L6-v2",
        device: str = "auto",
        precision: str = "auto",
        backend: str = "torch",
        onnx: OnnxOptions | None = None,
    ) -> Embedder:
        """Load a BERT sentence encoder directory (config.json, tokenizer.json, model.safetensors).

        precision auto: today's choice per backend (torch: fp16 on CUDA, bf16 on CPUs with native bf16 matmuls,
        else fp32; onnxruntime: fp32); int8 needs the onnxruntime backend. `onnx`: the ONNX backend's cache folder,
        int8 scheme and calibration texts (default: under the settings' cache_dir, static, the demo corpus).
        Errors: ModelNotFoundError for an unknown name; ValueError for a directory that lacks the files or holds
        another architecture, or an unknown or unsupported backend/precision; ImportError naming the extra to
        install when the onnxruntime backend is asked for without onnxruntime.
        """
        if backend not in BACKENDS:
            raise ValueError(f"embedder backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"embedder precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        path = resolve_model(name_or_path)
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise ValueError(f"{path}: not a sentence-encoder directory (missing {', '.join(missing)})")
        # Imported here: both backends subclass Embedder, and onnxruntime is an optional extra.
        if backend == "onnxruntime":
            from ragjet.embed.onnx_embedder import OnnxEmbedder

            return OnnxEmbedder.from_dir(path, device, precision, onnx)
        from ragjet.embed.torch_embedder import TorchEmbedder

        return TorchEmbedder.from_dir(path, device, precision)

    def embed(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors, in the order of `texts`."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batch = batch_size or DEFAULT_BATCH
        encodings = self._encoder.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), np.float32)
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("embedding", total=len(texts))
            for start in range(0, len(order), batch):
                rows = order[start : start + batch]
                out[rows] = self._forward([encodings[i].ids for i in rows])
                bar.advance(task, len(rows))
        return out

    @abstractmethod
    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        """One batch of unpadded token ids -> (B, dim) float32 unit vectors."""


def pad(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest: (B, N) int64 ids (0 in padding) and (B, N) int64 mask."""
    width = max(len(x) for x in ids)
    input_ids = np.zeros((len(ids), width), np.int64)
    mask = np.zeros((len(ids), width), np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def max_len(path: Path, max_position_embeddings: int) -> int:
    """sentence-transformers' max_seq_length when the directory has one (MiniLM: 256), else the model's."""
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text()).get("max_seq_length", max_position_embeddings))
    return max_position_embeddings


def model_id(path: Path) -> str:
    """Name plus a digest of the weights: a collection refuses vectors from any other weights."""
    digest = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    name = path.name if path.name != "model" else path.parent.name
    return f"{name}:{digest.hexdigest()[:12]}"
