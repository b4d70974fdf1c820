"""The host and the compute paths ragjet chose, as one JSON-serialisable report: what a bug report needs.

`ragjet doctor` prints it, building the fused CPU kernels first (unless told not to) so the report says whether
they build on this host; ``GET /v1/system`` serves it without building, so it shows what the server's own engine
did. Nothing here decides anything: the CPU choices are the hardware policy's, the quantisation is what
``auto_quantization`` (the engine's own call) returns for the model file, so the report cannot drift from what runs.
Every section has the same keys whatever the host; a value that does not apply is None.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ragjet import __version__
from ragjet.config import LLMSettings, Settings
from ragjet.device import default_dtype, pick_device
from ragjet.hardware import cpu_policy, dtype_name, host
from ragjet.llm.engine.memory import describe_budget
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.quantize import auto_quantization, quantized_dtype
from ragjet.models import PACKAGED_MODELS, ModelNotFoundError, resolve_model

Section = dict[str, object]
_ENGINE_KEYS = ("backend", "model", "model_path", "device", "dtype", "quantization", "dense_prefill", "dense_dtype",
                "kernels", "kernel_build", "kv_cache")  # fmt: skip


def system_report(
    settings: Settings, build_kernels: bool, on_build: Callable[[str], None] = lambda note: None
) -> Section:
    """The whole report. With `build_kernels` the fused CPU kernels are loaded first where the engine would use
    them, compiling them on a cold cache (~15-30 s, announced through `on_build`)."""
    policy = cpu_policy()
    return {
        "ragjet": __version__,
        "host": _host(),
        "policy": {f.name: _plain(getattr(policy, f.name)) for f in dataclasses.fields(policy)},
        "embedder": _embedder(settings),
        "engine": _engine(settings.llm, build_kernels, on_build),
        "models": _models(settings),
        "data_dir": _data_dir(settings.data_dir.expanduser().absolute()),
    }


def _plain(value: object) -> object:
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    return list(value) if isinstance(value, tuple) else value


def _host() -> Section:
    h = host()
    return {
        "cpu_model": h.cpu_model,
        "machine": h.machine,
        "detected_isa": h.detected_isa,
        "isa": h.isa,
        "forced": h.forced,
        "flags": list(h.flags),
        "torch_capability": h.torch_capability,
        "onednn_bf16": h.onednn_bf16,
        "cores": h.cores,
        "memory_gib": round(h.memory_gib, 1),
        "gpus": [
            {"index": g.index, "name": g.name, "memory_gib": round(g.memory_gib, 1), "capability": g.capability}
            for g in h.gpus
        ],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _device(requested: str) -> torch.device | str:
    """The device a setting resolves to, or why there is none: a doctor reports `cuda` on a GPU-less host."""
    try:
        return pick_device(requested)
    except RuntimeError as exc:
        return f"unavailable: {exc}"


def _embedder(settings: Settings) -> Section:
    device = _device(settings.embed.device)
    if isinstance(device, str):
        return {"model": settings.embed.model, "device": device, "dtype": None, "reason": None}
    embed, on_cuda, policy = settings.embed, device.type == "cuda", cpu_policy()
    if embed.backend == "onnxruntime":
        dtype = f"int8 {embed.int8_scheme}" if embed.precision == "int8" else "float32"
        return {"model": embed.model, "device": str(device), "dtype": dtype, "reason": "embed.backend = onnxruntime"}
    if embed.precision != "auto":
        return {"model": embed.model, "device": str(device), "dtype": embed.precision, "reason": "embed.precision"}
    return {
        "model": embed.model,
        "device": str(device),
        "dtype": "float16" if on_cuda else dtype_name(policy.embed_dtype),
        "reason": "fp16 on CUDA" if on_cuda else policy.reasons["embed_dtype"],
    }


def _engine(llm: LLMSettings, build: bool, on_build: Callable[[str], None]) -> Section:
    section: Section = dict.fromkeys(_ENGINE_KEYS) | {"backend": llm.backend, "model": llm.model}
    if llm.backend != "native":
        return section | {"model": llm.openai_model or None, "device": f"remote ({llm.openai_base_url})"}
    device = _device(llm.device)
    if isinstance(device, str):
        return section | {"device": device}
    try:
        source: Path | None = resolve_model(llm.model)
    except ModelNotFoundError:
        source = None  # the models section says why
    # Only int4 vs int8 depends on the file, so a missing one (read as non-GGUF: int8) still gives the dtype.
    mode = llm.quantization if llm.quantization != "auto" else auto_quantization(device, source or Path(llm.model))
    dtype = quantized_dtype(mode, device, default_dtype(device, llm.dtype))  # as the native backend loads it
    dense = llm.dense_prefill and device.type == "cpu" and mode in ("int8", "int4")
    return section | {
        "model_path": str(source) if source else None,
        "device": str(device),
        "dtype": dtype_name(dtype),
        "quantization": mode if source or mode == "none" else "unknown: model not found",
        "dense_prefill": dense,
        "dense_dtype": dtype_name(cpu_policy().dense_dtype) if dense else None,
        "kernels": _kernels(llm, device, dtype, build, on_build),
        "kernel_build": str(cpu_kernels.build_directory()),
        "kv_cache": describe_budget(device, llm.kv_cache_memory_gb, llm.gpu_memory_utilization),
    }


def _kernels(
    llm: LLMSettings, device: torch.device, dtype: torch.dtype, build: bool, on_build: Callable[[str], None]
) -> str:
    if device.type != "cpu":
        return f"not used on {device.type}"
    if not llm.cpu_kernels:
        return "off (llm.cpu_kernels = false): torch paths"
    if dtype not in cpu_kernels.KERNEL_DTYPES:
        return f"none for {dtype_name(dtype)}: torch paths"
    if build:
        if not cpu_kernels.is_cached():
            on_build(f"building the fused CPU kernels for {cpu_policy().isa} (first run, ~15-30 s)…")
        cpu_kernels.load(dtype)
    if cpu_kernels.status() != "not loaded":  # this process tried: what became of it
        return cpu_kernels.status()
    return "not loaded: cached build present" if cpu_kernels.is_cached() else "not loaded: not built yet"


def _models(settings: Settings) -> Section:
    """Every packaged model, and the configured ones that are paths: where each is, or why it is not."""
    used = {"llm": settings.llm.model, "embed": settings.embed.model}
    names = dict.fromkeys([*PACKAGED_MODELS, *used.values()])
    return {name: _model(name) | {"used_by": [role for role, m in used.items() if m == name]} for name in names}


def _model(name: str) -> Section:
    try:
        path = resolve_model(name)
    except ModelNotFoundError as exc:
        return {"path": None, "size_mb": None, "error": str(exc)}
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return {"path": str(path), "size_mb": round(sum(p.stat().st_size for p in files) / 1e6, 1), "error": None}


def _data_dir(path: Path) -> Section:
    existing = next(p for p in (path, *path.parents) if p.exists())  # the disk it will be created on
    return {
        "path": str(path),
        "exists": path.is_dir(),
        "free_gb": round(shutil.disk_usage(existing).free / 1e9, 1),
        "kernel_cache": str(cpu_kernels.cache_dir()),
    }


def render_text(report: Mapping[str, object]) -> str:
    """The report as `key : value` lines for a terminal: a block per section, keys aligned within each block."""
    return "\n".join(_lines(report, 0)).strip()


def _lines(block: Mapping[str, object], depth: int) -> list[str]:
    indent = "  " * depth
    width = max((len(k) for k, v in block.items() if not isinstance(v, Mapping)), default=0)
    lines = []
    for key, value in block.items():
        if isinstance(value, Mapping):
            lines += ["", key] if depth == 0 else [f"{indent}{key}"]
            lines += _lines(value, depth + 1)
        else:
            lines.append(f"{indent}{key.ljust(width)} : {_text(value)}")
    return lines


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if value and isinstance(value[0], dict):  # GPUs
            return "; ".join(" ".join(f"{k}={v}" for k, v in x.items()) for x in value)
        return " ".join(map(str, value)) or "none"
    return str(value)
