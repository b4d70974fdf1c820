"""Device choice and the GPU→CPU fallback policy's building blocks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


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


def is_device_failure(exc: BaseException) -> bool:
    """Out of memory, or a CUDA runtime error (a lost or faulted device): what moves serving to the CPU."""
    return is_out_of_memory(exc) or (isinstance(exc, RuntimeError) and "cuda error" in str(exc).lower())


PROBE_BYTES = 1 << 20  # the probe's allocation: small enough to fit beside a busy model, big enough to be real


def probe_device(device: torch.device, min_free_bytes: int = 0) -> bool:
    """True when `device` can allocate, compute and synchronise again (and has `min_free_bytes` free).

    CPU devices are always healthy. Any CUDA error counts as unhealthy; a device whose context was lost
    for good keeps failing, so serving stays on the CPU until the process is restarted.
    """
    if device.type != "cuda":
        return True
    try:
        torch.cuda.empty_cache()  # hand back what the failed request left in the caching allocator
        probe = torch.ones(PROBE_BYTES // 4, dtype=torch.float32, device=device)
        ok = bool(probe.sum().item() == probe.numel())
        torch.cuda.synchronize(device)
        del probe
        free, _ = torch.cuda.mem_get_info(device)
    except Exception:  # noqa: BLE001 (every failure of the probe means the same: not yet healthy)
        return False
    return ok and free >= min_free_bytes


class DeviceHealth:
    """Whether a GPU that failed may be used again: after a failure it is skipped, then probed at most every
    `interval_s` (the probe is `probe_device` on it, or one injected for tests), and used again once it passes.

    A synchronous sibling of the LLM backend's failover policy, for stages that run on worker threads."""

    def __init__(self, probe: Callable[[], bool], interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._probe, self.interval_s, self._clock = probe, interval_s, clock
        self._retry_at: float | None = None
        self.num_failures = 0

    @property
    def is_failed(self) -> bool:
        return self._retry_at is not None

    def usable(self) -> bool:
        if self._retry_at is None:
            return True
        if self._clock() < self._retry_at:
            return False
        if self._probe():
            log.warning("GPU healthy again: back on the GPU")
            self._retry_at = None
            return True
        self._retry_at = self._clock() + self.interval_s
        return False

    def failed(self, exc: BaseException) -> None:
        self.num_failures += 1
        self._retry_at = self._clock() + self.interval_s
        log.warning("GPU failed (%s: %s): on the CPU, next probe in %.0f s", type(exc).__name__, exc, self.interval_s)
