"""Builds and loads ragjet's fused CPU kernels (cpu_kernels.cpp) as ``torch.ops.ragjet_cpu``.

They are compiled on first use with the machine's C++ compiler and ninja (``-O3 -march=native``, 15-30 s on 2
cores) into a cache keyed by the source, flags, torch version and CPU, so later starts load them in well under
a second. Without a compiler, or when the build fails, ``load`` logs why once and returns False: the
layers then take their pure-torch paths, which compute the same thing more slowly.

The engine loads them when it starts on the CPU (``EngineConfig.cpu_kernels``); layers only ask
``usable(x)``, which never builds, so a model used outside an engine never triggers a build mid-forward.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import time
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
# gcc keeps AVX-512 code to 256-bit vectors unless told otherwise (an x86 flag); the kernels' loops want the full
# width.
X86_FLAGS = ["-mprefer-vector-width=512"] if platform.machine().lower() in ("x86_64", "amd64") else []
CFLAGS = ["-O3", "-march=native", *X86_FLAGS, "-fopenmp"]
STALE_LOCK_S = 600.0  # a build takes well under a minute
_state = {"loaded": False}


def cache_dir() -> Path:
    """Where builds live: $RAGJET_KERNEL_CACHE, else ragjet/kernels under $XDG_CACHE_HOME (~/.cache)."""
    if configured := os.environ.get("RAGJET_KERNEL_CACHE"):
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragjet" / "kernels"


def _build_key() -> str:
    cpu = next((line for line in _cpuinfo() if line.startswith("flags")), platform.machine())
    parts = (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), torch.__version__.encode(), cpu.encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


@functools.cache
def load() -> bool:
    """Compile (first time) and load the kernels; False, with the reason logged, when they cannot be."""
    if shutil.which(os.environ.get("CXX", "c++")) is None or shutil.which("ninja") is None:
        log.warning("no C++ compiler or no ninja found: the LLM runs without its fused CPU kernels (slower decode)")
        return False
    from torch.utils.cpp_extension import load as build

    directory = cache_dir() / _build_key()
    try:
        directory.mkdir(parents=True, exist_ok=True)  # a read-only or full disk lands in the except below
        _remove_stale_lock(directory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the compiler's ABI flags; the build checks itself
            build(
                name="ragjet_cpu_kernels",
                sources=[str(SOURCE)],
                extra_cflags=CFLAGS,
                extra_ldflags=["-fopenmp"],
                build_directory=str(directory),
                is_python_module=False,
            )
    except Exception as exc:  # noqa: BLE001 (any build failure leaves the torch paths, which are correct)
        log.warning("building the fused CPU kernels failed, the LLM runs without them: %s", exc)
        return False
    _state["loaded"] = True
    return True


def _remove_stale_lock(directory: Path) -> None:
    """torch's build holds a lock file while it compiles and waits, forever, for one it finds. A build killed
    midway (a server stopped during its first start) leaves its lock behind; one older than any build is stale."""
    lock = directory / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        log.warning("removing a stale kernel build lock left by an interrupted build: %s", lock)
        lock.unlink(missing_ok=True)


def loaded() -> bool:
    """Whether ``load`` has succeeded in this process (never builds)."""
    return _state["loaded"]


def usable(x: torch.Tensor) -> bool:
    """Whether a layer should run its fused kernel on ``x``: loaded, a CPU tensor, bf16 (the CPU serving
    dtype; fp32, the exactness reference against transformers, keeps the torch paths)."""
    return _state["loaded"] and x.device.type == "cpu" and x.dtype == torch.bfloat16
