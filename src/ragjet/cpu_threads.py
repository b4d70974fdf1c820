"""Which threads run torch's CPU ops with an OpenMP team, and why only one may while an LLM decodes.

torch's CPU build parallelises ops with OpenMP (libgomp), which keeps a team of worker threads for
every thread that has run a parallel op. Its workers spin-wait between parallel regions only while
no more threads sit in teams than there are cores; past that they sleep, and every parallel region
pays a wake-up. A decode step of a small model is hundreds of small parallel kernels, so the thread
that steps an LLM engine on the CPU must hold the only team: measured on SmolLM2-135M (2 cores,
batch 1), a step took 25.8 ms when loading and stepping shared one thread and 46.5 ms when the model
had been loaded on another.

So the engine loads its model on its own step thread (async_engine.py), and the helper threads of a
process that serves such an engine (embedding batches, retrieval, ingestion) run torch on one thread
each: `run_torch_single_threaded` in a thread, or `single_threaded_executor` for a pool.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@functools.cache
def _torch_libgomp() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's wheel ships and uses (None for builds without one, e.g. macOS)."""
    path = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not path.is_file():
        return None
    return ctypes.CDLL(str(path))  # already loaded by torch: this returns a handle to the same library


def run_torch_single_threaded() -> None:
    """From now on, torch ops called in this thread run on it alone and never start an OpenMP team.

    OpenMP's thread count is per thread, so other threads are untouched. torch sets a thread's count on
    its first parallel op; `get_num_threads` makes that happen now, so the setting below stays.
    """
    torch.get_num_threads()
    libgomp = _torch_libgomp()
    if libgomp is None:
        log.debug("torch has no bundled libgomp here: helper threads keep torch's thread count")
        return
    libgomp.omp_set_num_threads(1)


def single_threaded_executor(name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads run torch single-threaded (`run_torch_single_threaded`)."""
    return ThreadPoolExecutor(thread_name_prefix=name, initializer=run_torch_single_threaded)
