"""Our BertEncoder plus its pooling head, exported to ONNX with dynamic batch and sequence axes.

torch 2.13's default exporter (`dynamo=True`) needs onnxscript; the TorchScript exporter (`dynamo=False`) is
still shipped, deprecated, and needs only `onnx`. Our encoder is a plain traceable graph, so the TorchScript path
is used: one dependency fewer, and its output is checked against the torch embedder in tests/embed/test_onnx.py
(cosine >= 0.9999).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ragjet.embed.pooling import SentenceHead
from ragjet.embed.torch_embedder import load_encoder

OPSET = 17  # LayerNormalization is a single op from 17 on
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embeddings"


def export_onnx(source: Path, out: Path) -> None:
    """Write the fp32 ONNX model of the encoder in `source` (a model directory) to `out`: (B, N) int64 ids and
    mask in, (B, dim) float32 unit vectors out."""
    head = SentenceHead(load_encoder(source, torch.device("cpu"), torch.float32))
    ids = torch.ones(2, 8, dtype=torch.long)  # an example only: both axes are dynamic
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # a padded row, so the traced graph carries the real masking
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, OUTPUT: {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the deprecation notice of the TorchScript exporter, tracer notes
        torch.onnx.export(head, (ids, mask), str(out), dynamo=False, opset_version=OPSET, input_names=list(INPUTS),
                          output_names=[OUTPUT], dynamic_axes=axes)  # fmt: skip
