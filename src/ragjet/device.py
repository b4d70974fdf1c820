"""Device choice and the GPU→CPU fallback policy's building blocks."""

from __future__ import annotations

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """Map a settings value ('auto', 'cpu', 'cuda', 'cuda:1') to a usable torch device."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but no CUDA device is available")
    return device


def default_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """fp32 on CPU (exact, and fastest for small models there); bf16 on CUDA unless told otherwise."""
    if requested != "auto":
        return getattr(torch, requested)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA allocator failures, which the fallback policy retries on CPU."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
