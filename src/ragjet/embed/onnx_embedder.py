"""The ONNX Runtime backend: the embedder's ONNX export, fp32 or INT8, on ONNX Runtime's execution providers.

Needs the `onnx` extra (onnxruntime and onnx). Providers: TensorRT, then CUDA, when the device is a GPU and the
installed onnxruntime lists them (onnxruntime-gpu), always with the CPU provider behind them for any op they do
not take; else the CPU provider alone, with the thread count of the hardware policy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from tokenizers import Tokenizer

from ragjet.config import load_settings
from ragjet.device import pick_device
from ragjet.embed.bert import BertConfig
from ragjet.embed.embedder import Embedder, Int8Scheme, max_len, model_id, pad
from ragjet.hardware import cpu_policy

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'ragjet[onnx]'"


def _default_cache_dir() -> Path:
    return load_settings().cache_dir / "embed"


@dataclass(frozen=True, slots=True)
class OnnxOptions:
    cache_dir: Path = field(default_factory=_default_cache_dir)  # exported and quantised models
    int8_scheme: Int8Scheme = "static"  # static (calibrated) or dynamic: onnx_quant.py
    calibration_texts: tuple[str, ...] = ()  # the collection's chunks; fewer than 1,024: the demo corpus's
    num_threads: int | None = None  # intra-op threads on the CPU; None: the hardware policy's

    def __post_init__(self) -> None:
        if self.int8_scheme not in get_args(Int8Scheme):
            raise ValueError(f"embed.int8_scheme {self.int8_scheme!r} is not one of {', '.join(get_args(Int8Scheme))}")


class OnnxEmbedder(Embedder):
    def __init__(self, session: Any, tokenizer: Tokenizer, model_id: str, max_seq_len: int, dim: int, precision: str):
        super().__init__(tokenizer, model_id, max_seq_len, dim, precision)
        self.session = session  # an onnxruntime.InferenceSession; run() is thread-safe

    @classmethod
    def from_dir(
        cls, path: Path, device: str = "auto", precision: str = "auto", options: OnnxOptions | None = None
    ) -> OnnxEmbedder:
        """`path`: a checked model directory (Embedder.load resolves and checks it). Precision auto or fp32: the
        fp32 export; int8: its INT8 model in `options.int8_scheme`, built (and calibrated) on first use."""
        if precision not in ("auto", "fp32", "int8"):
            raise ValueError(
                f"embed.precision = {precision!r} is not run by the onnxruntime backend (fp32 or int8); "
                "use embed.backend = 'torch' for bf16 and fp16"
            )
        ort = _import_onnxruntime()
        from ragjet.embed.onnx_build import build_model  # these import onnx: only after the check above
        from ragjet.embed.onnx_quant import Calibration

        options = options or OnnxOptions()
        config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        seq_len, name = max_len(path, config.max_position_embeddings), model_id(path)
        calibration = Calibration(tokenizer, seq_len, options.calibration_texts) if precision == "int8" else None
        model = build_model(path, name, options, calibration)
        session = ort.InferenceSession(str(model), _session_options(ort, options), providers=_providers(ort, device))
        shown = f"int8 {options.int8_scheme}" if calibration else "fp32"
        return cls(session, tokenizer, name, seq_len, config.hidden_size, shown)

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        input_ids, mask = pad(ids)
        return np.asarray(self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0], np.float32)


def _import_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (the export and the quantiser need it)
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            f"embed.backend = 'onnxruntime' needs onnxruntime and onnx ({exc.name} is not installed): {INSTALL_HINT}"
        ) from exc
    return onnxruntime


def _session_options(ort: Any, options: OnnxOptions) -> Any:
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.num_threads or cpu_policy().threads
    return session_options


def _providers(ort: Any, device: str) -> list[Any]:
    """GPU providers first when the device is a GPU and this onnxruntime has them, the CPU provider always last."""
    torch_device = pick_device(device)
    if torch_device.type != "cuda":
        return ["CPUExecutionProvider"]
    gpu_options = {"device_id": torch_device.index or 0}
    available = ort.get_available_providers()
    gpu = [(p, gpu_options) for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu:
        log.warning("the device is %s but this onnxruntime has no GPU provider (install onnxruntime-gpu): the "
                    "ONNX embedder runs on the CPU", torch_device)  # fmt: skip
    return [*gpu, "CPUExecutionProvider"]

