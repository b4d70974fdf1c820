"""Dynamic batching for query embeddings: concurrent callers share one forward pass.

A worker thread takes the first waiting text, then keeps collecting until `max_batch` texts are in
hand or `max_wait_ms` has passed since the first one, and embeds them together. The forward runs on
that thread, never on an event loop; callers from any loop or thread await a concurrent Future.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ragjet.cpu_threads import run_torch_single_threaded
from ragjet.embed.embedder import Embedder

_STOP = object()


@dataclass(frozen=True, slots=True)
class BatcherStats:
    num_batches: int = 0
    num_items: int = 0
    max_batch_size: int = 0


class DynamicBatcher:
    def __init__(
        self, embedder: Embedder, max_batch: int = 64, max_wait_ms: float = 2.0, single_threaded: bool = False
    ):
        """`single_threaded`: the worker runs torch on its own thread alone (see ragjet/cpu_threads.py)."""
        self.embedder, self.max_batch, self.max_wait_s = embedder, max_batch, max_wait_ms / 1e3
        self.single_threaded = single_threaded
        self.stats = BatcherStats()
        self._queue: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ragjet-embed-batcher", daemon=True)
        self._thread.start()

    async def embed(self, text: str) -> np.ndarray:
        """The (dim,) unit vector of `text`, computed in a batch with whatever else is waiting."""
        return await asyncio.wrap_future(self.submit(text))

    def submit(self, text: str) -> Future[np.ndarray]:
        if self._closed:
            raise RuntimeError("the embedding batcher is closed")
        future: Future[np.ndarray] = Future()
        self._queue.put((text, future))
        return future

    def close(self) -> None:
        """Stop the worker; texts still waiting fail with RuntimeError. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                item[1].set_exception(RuntimeError("the embedding batcher was closed"))  # type: ignore[index]

    def _run(self) -> None:
        if self.single_threaded:
            run_torch_single_threaded()
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)  # finish this batch, then stop
                    break
                batch.append(item)
            self._embed(batch)  # type: ignore[arg-type]

    def _embed(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        try:
            vectors = self.embedder.embed([text for text, _ in batch], batch_size=len(batch))
        except Exception as exc:  # noqa: BLE001 (the error belongs to these callers only)
            for _, future in batch:
                future.set_exception(exc)
            return
        s = self.stats
        self.stats = BatcherStats(s.num_batches + 1, s.num_items + len(batch), max(s.max_batch_size, len(batch)))
        for (_, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)
