"""INT8 ONNX models of the embedder, from its fp32 export: static (calibrated) or dynamic quantisation.

Both quantise only the encoder's linears (MatMuls with a weight initializer), weights per output channel, in
ONNX Runtime's QDQ format; attention's activation-by-activation MatMuls, softmax, layer norms and pooling stay
fp32.

static: activation scales from min/max over calibration chunks (>= 1,024, the collection's own chunks when the
    caller has them, else the demo corpus's). The FFN down projections stay fp32: their inputs (after GELU) have
    outlier channels that one per-tensor scale cannot hold; measured on all-MiniLM-L6-v2 over 64 held-out
    256-token chunks, quantising them gave a minimum cosine to fp32 of 0.852, keeping them fp32 0.991. Min/max is
    the calibrator that fits in memory at this size (it reduces each batch inside the graph); ONNX Runtime's
    percentile and entropy calibrators keep every activation (killed at 23 GB with 128 chunks here).
dynamic: no calibration; activation scales computed per batch at run time (minimum cosine 0.989 on the same set).

`embed.int8_scheme` defaults to static, from benchmarks/embed_backends.py (docs/benchmarks.md, 2 cores of an AMX
Xeon, one run): dynamic was faster (50 vs 32 chunks/s of 256 tokens, 1.5 vs 2.2 ms a query) but lost 1.1 points
of recall@5 on pydoc-squad and 1.0 of nDCG@10 on python-beir against torch fp32, past the 0.5-point target; static
lost none on either set. Dynamic stays selectable where speed matters more than that loss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from rich.progress import Progress, TaskID
from tokenizers import Tokenizer

from ragjet.embed.embedder import NUM_CALIBRATION_CHUNKS, Int8Scheme, pad
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.demo import demo_documents

FALLBACK_CHUNK_TOKENS = 128  # the demo corpus makes ~650 chunks of 256 tokens, ~1,300 of 128
CALIBRATION_BATCH = 32


@dataclass(frozen=True, slots=True)
class Calibration:
    tokenizer: Tokenizer  # the embedder's, as loaded
    max_seq_len: int  # chunks are truncated here, as the embedder truncates them
    texts: Sequence[str] = ()  # the collection's chunks; fewer than NUM_CALIBRATION_CHUNKS: the demo corpus's

    @property
    def tag(self) -> str:
        """Names the calibration set in the cache key: a digest of the given chunks, "" for the demo corpus's."""
        if len(self.texts) < NUM_CALIBRATION_CHUNKS:
            return ""
        return hashlib.blake2b("\x00".join(self.texts).encode(), digest_size=5).hexdigest()


class ChunkReader(CalibrationDataReader):
    """Feeds calibration chunks to ONNX Runtime's calibrator in padded batches, advancing a progress bar."""

    def __init__(self, tokenizer: Tokenizer, texts: Sequence[str], bar: Progress, task: TaskID):
        self._batches = self._iterate(tokenizer, texts)
        self._bar, self._task = bar, task

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def _iterate(self, tokenizer: Tokenizer, texts: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(texts), CALIBRATION_BATCH):
            batch = texts[start : start + CALIBRATION_BATCH]
            input_ids, mask = pad([e.ids for e in tokenizer.encode_batch(list(batch))])
            yield {"input_ids": input_ids, "attention_mask": mask}
            self._bar.advance(self._task, len(batch))


def calibration_texts(calibration: Calibration) -> tuple[list[str], str]:
    """NUM_CALIBRATION_CHUNKS texts spread evenly over the given ones, or over the demo corpus's chunks (the Python
    language reference, in chunks of FALLBACK_CHUNK_TOKENS) when fewer are given; and which set it was."""
    texts, source = calibration.texts, "given chunks"
    if len(texts) < NUM_CALIBRATION_CHUNKS:
        chunker = Chunker(calibration.tokenizer, max_tokens=min(calibration.max_seq_len, FALLBACK_CHUNK_TOKENS))
        texts = [chunk.text for doc in demo_documents() for chunk in chunker.split(doc)]
        source = "demo corpus chunks"
    if len(texts) < NUM_CALIBRATION_CHUNKS:
        raise ValueError(f"INT8 calibration needs {NUM_CALIBRATION_CHUNKS} chunks; only {len(texts)} are at hand")
    picks = np.linspace(0, len(texts) - 1, NUM_CALIBRATION_CHUNKS).round().astype(int)
    return [texts[i] for i in picks], source


def linear_nodes(model: Path, keep_fp32_width: int | None = None) -> list[str]:
    """Names of the MatMuls that multiply by a weight initializer; those whose weight has `keep_fp32_width` input
    rows (the FFN down projections: intermediate_size) are left out."""
    graph = onnx.load(str(model), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    names = []
    for node in graph.node:
        weights = [shapes[i] for i in node.input if i in shapes]
        if node.op_type == "MatMul" and weights and weights[0][0] != keep_fp32_width:
            names.append(node.name)
    return names


def quantize_int8(
    fp32: Path, out: Path, scheme: Int8Scheme, calibration: Calibration, intermediate_size: int
) -> dict[str, Any]:
    """Write the INT8 model of `fp32` to `out`; returns what the cache records about it (scheme, calibration)."""
    if scheme == "dynamic":
        quantize_dynamic(fp32, out, per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=linear_nodes(fp32))
        return {"scheme": scheme}
    chunks, source = calibration_texts(calibration)
    tokenizer = Tokenizer.from_str(calibration.tokenizer.to_str())
    tokenizer.enable_truncation(calibration.max_seq_len)
    tokenizer.no_padding()
    with Progress(transient=True) as bar:
        task = bar.add_task("calibrating int8 embedder", total=len(chunks))
        quantize_static(
            fp32, out, ChunkReader(tokenizer, chunks, bar, task), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=linear_nodes(fp32, keep_fp32_width=intermediate_size),
        )  # fmt: skip
    return {"scheme": scheme, "calibration": source, "num_calibration_chunks": len(chunks)}
