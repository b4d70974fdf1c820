"""Builds and loads ragjet's fused CPU kernels (cpu_kernels.cpp, cpu_decode.cpp) as ``torch.ops.ragjet_cpu``.

They are compiled on first use with the machine's C++ compiler and ninja (15-30 s on 2 cores), for the ISA
level the hardware policy picked (``-march=x86-64-v3`` for AVX2, ``x86-64-v4`` for AVX-512, baseline flags
for generic and non-x86 hosts; never ``-march=native``), into a cache keyed by that level, the source, the
flags and the torch version. Each level has its own build, so a cache shared by several hosts never hands an
AVX-512 build to an AVX2 CPU; later starts load a cached build in well under a second. Without a compiler,
or when the build fails, ``load`` logs why once and returns False: the layers then take their pure-torch
paths, which compute the same thing more slowly. ``status()`` says which happened (``ragjet doctor``).

The engine loads them when it starts on the CPU (``EngineConfig.cpu_kernels``) and enables them for its
compute dtype; layers only ask ``usable(x)``, which never builds, so a model used outside an engine never
triggers a build mid-forward, and an fp32 model (the exactness reference) keeps the torch paths unless an
fp32 engine asked for them.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from ragjet.hardware import cpu_policy

log = logging.getLogger(__name__)
SOURCES = tuple(Path(__file__).with_name(name) for name in ("cpu_kernels.cpp", "cpu_decode.cpp"))
HEADERS = (Path(__file__).with_name("cpu_kernels.h"),)
KERNEL_DTYPES = (torch.bfloat16, torch.float32)
STALE_LOCK_S = 600.0  # a build takes well under a minute
_state: dict[str, object] = {"loaded": False, "dtypes": frozenset(), "status": "not loaded"}


def cflags() -> list[str]:
    return ["-O3", *cpu_policy().kernel_flags, "-fopenmp"]


def cache_dir() -> Path:
    """Where builds live: $RAGJET_KERNEL_CACHE, else ragjet/kernels under $XDG_CACHE_HOME (~/.cache)."""
    if configured := os.environ.get("RAGJET_KERNEL_CACHE"):
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragjet" / "kernels"


def build_directory() -> Path:
    """This level's build: <cache>/<isa>-<digest of source, flags and torch version>."""
    parts = (*(f.read_bytes() for f in (*SOURCES, *HEADERS)), " ".join(cflags()).encode(), torch.__version__.encode())
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    return cache_dir() / f"{cpu_policy().isa}-{digest}"


def is_cached() -> bool:
    """Whether this level's build is already in the cache (loading it then takes well under a second)."""
    directory = build_directory()
    return directory.is_dir() and any(directory.glob("*.so"))


def load(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Compile (first time) and load the kernels, and let layers use them on ``dtype`` tensors; False, with
    the reason logged, when they cannot be."""
    if dtype not in KERNEL_DTYPES or not _build():
        return False
    _state["dtypes"] = frozenset({*_state["dtypes"], dtype})  # type: ignore[misc]
    return True


@functools.cache
def _build() -> bool:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None or shutil.which("ninja") is None:
        missing = f"C++ compiler ({compiler})" if shutil.which(compiler) is None else "ninja"
        return _failed(f"no {missing} found", "the LLM runs without its fused CPU kernels (slower decode)")
    from torch.utils.cpp_extension import load as build

    directory, cached = build_directory(), is_cached()
    started = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)  # a read-only or full disk lands in the except below
        _remove_stale_lock(directory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the compiler's ABI flags; the build checks itself
            build(
                name="ragjet_cpu_kernels",
                sources=[str(f) for f in SOURCES],
                extra_cflags=cflags(),
                extra_ldflags=["-fopenmp"],
                build_directory=str(directory),
                is_python_module=False,
            )
    except Exception as exc:  # noqa: BLE001 (any build failure leaves the torch paths, which are correct)
        return _failed(f"build failed: {exc}", "the LLM runs without them")
    how = "cached" if cached else f"built in {time.perf_counter() - started:.0f} s"
    _state.update(loaded=True, status=f"{how} for {cpu_policy().isa} ({directory})")
    log.info("fused CPU kernels %s", _state["status"])
    return True


def _failed(reason: str, consequence: str) -> bool:
    _state["status"] = f"unavailable: {reason}"
    log.warning("fused CPU kernels: %s; %s", reason, consequence)
    return False


def _remove_stale_lock(directory: Path) -> None:
    """torch's build holds a lock file while it compiles and waits, forever, for one it finds. A build killed
    midway (a server stopped during its first start) leaves its lock behind; one older than any build is stale."""
    lock = directory / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        log.warning("removing a stale kernel build lock left by an interrupted build: %s", lock)
        lock.unlink(missing_ok=True)


def loaded() -> bool:
    """Whether ``load`` has succeeded in this process (never builds)."""
    return bool(_state["loaded"])


def status() -> str:
    """What became of the kernels in this process: not loaded, cached / built (for which level), or why not."""
    return str(_state["status"])


def usable(x: torch.Tensor) -> bool:
    """Whether a layer should run its fused kernel on ``x``: loaded, a CPU tensor, of a dtype an engine
    enabled them for."""
    return bool(_state["loaded"]) and x.device.type == "cpu" and x.dtype in _state["dtypes"]  # type: ignore[operator]
