"""Batch ingest on Ray Data (`ragjet ingest --ray`): loading, chunking and embedding spread over a Ray cluster.

    driver: list the files ──► Ray Data: load + chunk (map_batches) ──► embed (map_batches, an actor pool: each
            actor loads the embedder once) ──► driver: store each document, in file order, in its own transaction

Embedding is the work that outgrows one machine, so it is what the cluster runs; the writes stay on the driver,
for two reasons. Chunk ids are collection-wide and given out in write order (store/sharded.py), so writing in the
local path's order gives the same ids as `ingest_paths`, sharded or not, and equal scores rank the same. And the
local path's safety carries over unchanged: one writer lock, one transaction per document, content hashes that
make a re-run skip what is stored. A run that dies part-way (a failed batch, a lost node) has stored a prefix of
the file list; running it again embeds only the rest and ends in the state one clean run gives. Ray Data keeps the
rows in order (`preserve_order`), buffering a fast batch behind a slow one, so the driver never waits on a sort.

The collection folder must be on the driver's filesystem; the workers only read the input files, so those paths
must be readable on every node (a shared filesystem), as they are on a single machine.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.progress import Progress

from ragjet.config import Settings
from ragjet.embed.embedder import Embedder
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.loaders import files_to_load
from ragjet.rag.collections import CollectionRegistry
from ragjet.rag.ingestion import IngestReport, Tally, store_document
from ragjet.rag.pipeline import load_embedder
from ragjet.rag.ray_stages import ERROR, STORE, UNCHANGED, EmbedChunks, load_and_chunk
from ragjet.store import AnyCollection

RAY_DATA_MISSING = "Ray Data is not installed: pip install 'ragjet[ray]' (ray[data]) to ingest with --ray"


def require_ray_data() -> None:
    """ImportError with the install line when `ray.data` cannot be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(RAY_DATA_MISSING) from exc


@dataclass(frozen=True, slots=True)
class RayIngestOptions:
    """How the work is cut and where it runs; the chunks and vectors do not depend on it."""

    address: str | None = None  # the cluster to join; None: RAY_ADDRESS, else a local Ray instance
    num_embed_actors: int = 1  # the embedder pool: one model copy each; size it to the cluster's CPUs or GPUs
    num_gpus_per_actor: float = 0.0  # > 0 puts each embedder on a GPU of the cluster
    files_per_batch: int = 8  # files one load-and-chunk call reads
    files_per_embed_batch: int = 16  # files whose chunks one embed call takes (the embedder batches inside it)

    def __post_init__(self) -> None:
        for name in ("num_embed_actors", "files_per_batch", "files_per_embed_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_gpus_per_actor < 0:
            raise ValueError(f"num_gpus_per_actor must be >= 0, got {self.num_gpus_per_actor}")


def ingest_paths_ray(
    collection: AnyCollection,
    paths: list[Path],
    embedder: Embedder,
    chunker: Chunker,
    load_actor_embedder: Callable[[], Embedder],
    options: RayIngestOptions = RayIngestOptions(),
    *,
    on_error: Literal["raise", "skip"] = "skip",
    progress: bool = False,
) -> IngestReport:
    """`ingest_paths` with loading, chunking and embedding on the connected Ray cluster (call `ray.init` first).

    `embedder` is the driver's: it names the collection's embedder and is never run. Each actor builds its own with
    `load_actor_embedder` (picklable), which must load the same model.

    Raises:
        EmbedderMismatchError: the collection was built with another embedder (nothing is written).
        IngestError: with on_error="raise", the first bad file in file order (documents before it stay stored).
        ray.exceptions.RayError: a batch failed on the cluster (documents before it stay stored; run again).
    """
    started = time.perf_counter()
    collection.check_embedder(embedder.model_id, embedder.dim)
    tally = Tally()
    with collection.writer(), Progress(disable=not progress, transient=False) as bar:
        files = [str(p) for p in files_to_load(paths, on_error=on_error, on_skip=lambda e: tally.errors.append(str(e)))]
        task = bar.add_task("ingesting", total=len(files))
        stored_hashes = {d.source: d.content_hash for d in collection.documents()}
        # Closed on any exit: a run given up midway (a bad file, a failed batch) stops its Ray Data execution here,
        # not whenever the garbage collector reaches the abandoned stream, perhaps after `ray.shutdown()`, where
        # Ray's core worker ends the whole process with exit code 1 when a leftover object touches it.
        with contextlib.closing(_rows(files, chunker, stored_hashes, load_actor_embedder, options)) as rows:
            for position, row in enumerate(rows):
                if row["file"] != position:  # chunk ids follow write order: never store out of file order
                    raise RuntimeError(f"Ray Data returned file {row['file']} where file {position} was due")
                bar.advance(task)
                _store_row(collection, row, tally, on_error)
    return tally.report(started)


def _rows(
    files: list[str],
    chunker: Chunker,
    stored_hashes: dict[str, str],
    load_actor_embedder: Callable[[], Embedder],
    options: RayIngestOptions,
) -> Generator[dict[str, Any], None, None]:
    """One row per file (rag/ray_stages.py), in file order."""
    if not files:
        return
    import ray.data

    # at least a block per actor: an actor without one idles
    num_blocks = min(len(files), max(math.ceil(len(files) / options.files_per_batch), options.num_embed_actors))
    dataset = (
        ray.data.from_items([{"file": i, "path": path} for i, path in enumerate(files)], override_num_blocks=num_blocks)
        .map_batches(functools.partial(load_and_chunk, chunker=chunker, stored_hashes=stored_hashes),
                     batch_size=options.files_per_batch)
        .map_batches(EmbedChunks, batch_size=options.files_per_embed_batch, fn_constructor_args=(load_actor_embedder,),
                     compute=ray.data.ActorPoolStrategy(size=options.num_embed_actors),
                     num_gpus=options.num_gpus_per_actor)
    )  # fmt: skip
    dataset.context.execution_options.preserve_order = True  # this dataset's context only, not the process's
    yield from dataset.iter_rows()


def _store_row(collection: AnyCollection, row: dict[str, Any], tally: Tally, on_error: str) -> None:
    if row["status"] == UNCHANGED:
        tally.unchanged += 1
    elif row["status"] == ERROR:
        if on_error == "raise":
            raise row["error"]
        tally.errors.append(str(row["error"]))
    else:
        assert row["status"] == STORE, row["status"]
        vectors = np.array(row["vectors"], dtype=np.float32)  # a writable copy: Ray hands out read-only views
        store_document(collection, row["document"], list(row["chunks"]), vectors, tally)


def ray_ingest(
    settings: Settings, collection: str, paths: list[Path], options: RayIngestOptions, progress: bool = False
) -> IngestReport:
    """`ragjet ingest --ray`: join (or start) the cluster, ingest into `collection` (created if missing), leave.

    The driver loads the embedder too, for its identity and tokenizer; the actors load it from the same settings.
    ImportError naming the extra when Ray Data is not installed.
    """
    require_ray_data()
    import ray

    embedder = load_embedder(settings, single_threaded=False)
    registry = CollectionRegistry(settings)
    registry.embedder = embedder
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        with registry.writing(collection) as store:
            chunker = Chunker.from_settings(embedder.tokenizer, settings.chunk)
            actor_embedder = functools.partial(load_embedder, settings, False)
            return ingest_paths_ray(store, paths, embedder, chunker, actor_embedder, options, progress=progress)
    finally:
        if started_here:
            shutdown_ray()


def shutdown_ray() -> None:
    """`ray.shutdown()`, after collecting this process's garbage: a Ray object (an object ref, an actor handle, a
    dataset's stream) freed after the shutdown touches the core worker, which then ends the process with exit
    code 1 and no traceback, so a run that succeeded would be reported as failed."""
    import ray

    gc.collect()
    ray.shutdown()
