"""The torch backend: our BertEncoder (plain torch, SDPA) in fp32, bf16 or fp16.

On a GPU, a batch that runs out of memory or hits a CUDA error is redone on a CPU copy of the encoder
(loaded from the same files on the first failure), and later batches stay on the CPU until the GPU passes
a probe (`DeviceHealth`): queries keep being answered, with no restart.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from ragjet.device import DeviceHealth, is_device_failure, pick_device, probe_device
from ragjet.embed.bert import BertConfig, BertEncoder, load_bert_state
from ragjet.embed.embedder import Embedder, max_len, model_id, pad
from ragjet.embed.pooling import mean_pool_normalize
from ragjet.hardware import cpu_policy, dtype_name

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEmbedder(Embedder):
    def __init__(
        self,
        model: BertEncoder,
        tokenizer: Tokenizer,
        model_id: str,
        max_seq_len: int,
        source: Path | None = None,
        health: DeviceHealth | None = None,
    ):
        """`source`: the model directory, from which a CPU copy is loaded when `health` (set for a GPU
        model) has marked the GPU failed."""
        dtype = model.word.weight.dtype
        super().__init__(tokenizer, model_id, max_seq_len, model.word.embedding_dim, dtype_name(dtype))
        self.model, self.source, self.health = model, source, health
        self._cpu_model: BertEncoder | None = None
        self._cpu_lock = threading.Lock()  # the batcher's thread and ingestion threads may fail over at once
        self.device = model.word.weight.device

    @classmethod
    def from_dir(cls, path: Path, device: str = "auto", precision: str = "auto") -> TorchEmbedder:
        """`path`: a checked model directory (Embedder.load resolves and checks it)."""
        config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
        torch_device = pick_device(device)
        model = load_encoder(path, torch_device, torch_dtype(precision, torch_device))
        health = DeviceHealth(lambda: probe_device(torch_device)) if torch_device.type == "cuda" else None
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        return cls(model, tokenizer, model_id(path), max_len(path, config.max_position_embeddings), path, health)

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        if self.health is None:
            return self._encode(self.model, self.device, ids)
        if self.health.usable():
            try:
                return self._encode(self.model, self.device, ids)
            except Exception as exc:
                if not is_device_failure(exc):
                    raise
                self.health.failed(exc)
        return self._encode(self._cpu_copy(), torch.device("cpu"), ids)

    def _cpu_copy(self) -> BertEncoder:
        """The encoder on the CPU, loaded from its files (not copied from a GPU that may be lost) on first use."""
        with self._cpu_lock:
            if self._cpu_model is None:
                if self.source is None:
                    raise RuntimeError("the embedder's GPU failed and it has no model directory for a CPU copy")
                cpu = torch.device("cpu")
                self._cpu_model = load_encoder(self.source, cpu, torch_dtype("auto", cpu))
        return self._cpu_model

    @torch.inference_mode()
    def _encode(self, model: BertEncoder, device: torch.device, ids: list[list[int]]) -> np.ndarray:
        input_ids, mask = (torch.from_numpy(a).to(device) for a in pad(ids))
        return mean_pool_normalize(model(input_ids, mask), mask).cpu().numpy()


def load_encoder(path: Path, device: torch.device, dtype: torch.dtype) -> BertEncoder:
    """The BertEncoder of a model directory, on `device` in `dtype`, in eval mode with no gradients."""
    config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
    model = BertEncoder(config)
    load_bert_state(model, load_file(str(path / "model.safetensors")))
    return model.to(device, dtype).eval().requires_grad_(False)


def torch_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA; on the CPU the hardware policy's: bf16 with native bf16 matmuls (measured: 2.7x fp32
    throughput, cosine to fp32 >= 0.9998 on 256-token chunks), fp32 where bf16 would be emulated and slower."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return cpu_policy().embed_dtype
    if precision == "int8":
        raise ValueError(
            "embed.precision = 'int8' needs embed.backend = 'onnxruntime': plain-torch int8 matmuls measured slower "
            "than bf16 here (docs/benchmarks.md)"
        )
    return _DTYPES[precision]
