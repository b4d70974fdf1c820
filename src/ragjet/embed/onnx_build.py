"""The ONNX model an embedder runs, from the cache or built into it: the fp32 export, and INT8 models from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragjet.embed.onnx_cache import CacheKey, cached_model
from ragjet.embed.onnx_export import OPSET, export_onnx
from ragjet.embed.onnx_quant import Calibration, quantize_int8

if TYPE_CHECKING:
    from ragjet.embed.onnx_embedder import OnnxOptions


def build_model(source: Path, model_id: str, options: OnnxOptions, calibration: Calibration | None) -> Path:
    """The cached model.onnx for the model directory `source`: fp32 without `calibration`, else INT8 in
    `options.int8_scheme` (quantised from the cached fp32 export)."""
    fp32 = cached_model(options.cache_dir, CacheKey(model_id, OPSET, "fp32"), lambda out: _export(source, out))
    if calibration is None:
        return fp32
    intermediate_size = int(json.loads((source / "config.json").read_text())["intermediate_size"])

    def quantize(out: Path) -> dict[str, Any]:
        return quantize_int8(fp32, out, options.int8_scheme, calibration, intermediate_size)

    return cached_model(options.cache_dir, CacheKey(model_id, OPSET, int8_variant(options, calibration)), quantize)


def int8_variant(options: OnnxOptions, calibration: Calibration) -> str:
    """int8-dynamic, or int8-static plus the calibration set's tag: a model calibrated on other chunks is another."""
    tag = calibration.tag if options.int8_scheme == "static" else ""
    return f"int8-{options.int8_scheme}" + (f"-{tag}" if tag else "")


def _export(source: Path, out: Path) -> dict[str, Any]:
    export_onnx(source, out)
    return {"source": str(source)}
