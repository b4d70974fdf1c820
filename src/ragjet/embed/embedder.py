"""Sentence embeddings: BERT token states, mean-pooled over real tokens, L2-normalised.

Texts are sorted by token length and batched in that order, so a batch pads to similar lengths and
little compute goes to padding; results are returned in the caller's order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from safetensors.torch import load_file
from tokenizers import Tokenizer

from ragjet.device import pick_device
from ragjet.embed.bert import BertConfig, BertEncoder, load_bert_state
from ragjet.models import resolve_model

DEFAULT_BATCH = 64
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")


class Embedder:
    def __init__(self, model: BertEncoder, tokenizer: Tokenizer, model_id: str, max_seq_len: int):
        self.model, self.tokenizer, self.model_id, self.max_seq_len = model, tokenizer, model_id, max_seq_len
        self.dim = model.word.embedding_dim
        self.device = model.word.weight.device
        self._encoder = Tokenizer.from_str(tokenizer.to_str())  # truncating copy; `tokenizer` stays as loaded
        self._encoder.enable_truncation(max_seq_len)
        self._encoder.no_padding()

    @classmethod
    def load(cls, name_or_path: str = "all-MiniLM-L6-v2", device: str = "auto", dtype: str = "auto") -> Embedder:
        """Load a BERT sentence encoder directory (config.json, tokenizer.json, model.safetensors).

        dtype auto: fp16 on CUDA, bf16 on CPUs with native bf16 matmuls, else fp32. Errors: ModelNotFoundError for an
        unknown name, ValueError for a directory that lacks the files or holds another architecture.
        """
        path = resolve_model(name_or_path)
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise ValueError(f"{path}: not a sentence-encoder directory (missing {', '.join(missing)})")
        config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
        torch_device = pick_device(device)
        model = BertEncoder(config)
        load_bert_state(model, load_file(str(path / "model.safetensors")))
        torch_dtype = _dtype(dtype, torch_device)
        model = model.to(torch_device, torch_dtype).eval().requires_grad_(False)
        return cls(model, Tokenizer.from_file(str(path / "tokenizer.json")), _model_id(path), _max_len(path, config))

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

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        states = self.model(input_ids, mask).float()
        weights = mask.unsqueeze(-1).float()
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()


def _dtype(requested: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA; bf16 on CPUs with native bf16 matmuls (measured: 2.7x fp32 throughput, cosine to
    fp32 >= 0.9998 on 256-token chunks), fp32 on other CPUs, where bf16 would be emulated and slower."""
    if requested == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if requested not in table:
        raise ValueError(f"embedder dtype {requested!r} is not one of auto, {', '.join(table)}")
    return table[requested]


def _max_len(path: Path, config: BertConfig) -> int:
    """sentence-transformers' max_seq_length when the directory has one (MiniLM: 256), else the model's."""
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text()).get("max_seq_length", config.max_position_embeddings))
    return config.max_position_embeddings


def _model_id(path: Path) -> str:
    """Name plus a digest of the weights: a collection refuses vectors from any other weights."""
    digest = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    name = path.name if path.name != "model" else path.parent.name
    return f"{name}:{digest.hexdigest()[:12]}"
