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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
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
    """Whether a GPU that failed may be used again: the GPU→CPU fallback policy, shared by every stage.

    After a failure the GPU is skipped, then probed at most every `interval_s` (the probe is `probe_device`
    on it, or one injected for tests) and used again once a probe passes. A GPU that fails again within
    `max_interval_s` of recovering is probed at a doubled interval (up to `max_interval_s`), so a card that
    only just fits does not flap. `usable` probes inline (for stages on worker threads); an asyncio caller
    runs `probe` off its loop itself, between `probe_due` and `record_probe`.
    """

    def __init__(
        self,
        probe: Callable[[], bool],
        interval_s: float = 5.0,
        max_interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.probe, self._clock = probe, clock
        self.base_interval_s, self.max_interval_s = interval_s, max_interval_s
        self.interval_s = interval_s
        self.failed_since: float | None = None  # clock time of the failure that took the GPU out of service
        self.recovered_at: float | None = None
        self.num_failures = 0
        self._next_probe_at = 0.0

    @property
    def is_failed(self) -> bool:
        return self.failed_since is not None

    def failed(self, exc: BaseException) -> None:
        """Take the GPU out of service; failures while it is out (concurrent requests) count once."""
        if self.failed_since is not None:
            return
        now = self._clock()
        relapse = self.recovered_at is not None and now - self.recovered_at < self.max_interval_s
        self.interval_s = min(self.max_interval_s, self.interval_s * 2) if relapse else self.base_interval_s
        self.failed_since, self._next_probe_at = now, now + self.interval_s
        self.num_failures += 1
        log.warning("GPU failed (%s: %s): on the CPU, next probe in %.0f s", type(exc).__name__, exc, self.interval_s)

    def probe_due(self) -> bool:
        return self.failed_since is not None and self._clock() >= self._next_probe_at

    def record_probe(self, healthy: bool) -> None:
        now = self._clock()
        if not healthy:
            self._next_probe_at = now + self.interval_s
        elif self.failed_since is not None:
            log.warning("GPU healthy again after %.1f s on the CPU: back on the GPU", now - self.failed_since)
            self.failed_since, self.recovered_at = None, now

    def usable(self) -> bool:
        """Whether to use the GPU now, probing it first when a probe is due."""
        if self.probe_due():
            self.record_probe(self.probe())
        return self.failed_since is None
