"""Embedding benchmark: ragjet's embedder vs sentence-transformers, same model, same texts, same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from tokenizers import Tokenizer

from benchmarks.report import BenchRow, machine_description
from ragjet.embed.embedder import Embedder
from ragjet.ingest.demo import demo_documents
from ragjet.models import resolve_model

TITLE = "Embedding (all-MiniLM-L6-v2)"
CHUNK_TOKENS = 256
BATCH = 64


def chunks_of_256_tokens(embedder: Embedder, count: int) -> list[str]:
    """Windows of 256 embedder tokens (incl. specials) of the Python language reference.

    The corpus is encoded with truncation off: the model's tokenizer.json truncates at 128 tokens.
    """
    tokenizer = Tokenizer.from_str(embedder.tokenizer.to_str())
    tokenizer.no_truncation()
    ids = tokenizer.encode(" ".join(d.text for d in demo_documents()), add_special_tokens=False).ids
    step = CHUNK_TOKENS - 2
    if len(ids) < count * step:
        raise ValueError(f"the demo corpus has {len(ids)} tokens, fewer than {count} windows of {step}")
    return [tokenizer.decode(ids[i * step : (i + 1) * step]) for i in range(count)]


def throughput(encode: Callable[[list[str]], object], texts: list[str]) -> float:
    encode(texts[:BATCH])  # warm-up
    started = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - started)


def query_latency_ms(encode: Callable[[list[str]], object], queries: list[str]) -> float:
    encode(queries[:1])
    times = []
    for q in queries:
        started = time.perf_counter()
        encode([q])
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def run(quick: bool) -> tuple[list[BenchRow], str]:
    from sentence_transformers import SentenceTransformer

    ours = Embedder.load("all-MiniLM-L6-v2", device="cpu")
    theirs = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2")), device="cpu")
    texts = chunks_of_256_tokens(ours, 64 if quick else 384)
    queries = ["What does the with statement do?", "How are exceptions chained?", "What is a generator?"] * (
        3 if quick else 20
    )
    st_encode = lambda t: theirs.encode(t, batch_size=BATCH, normalize_embeddings=True)  # noqa: E731
    rj_encode = lambda t: ours.embed(t, batch_size=BATCH)  # noqa: E731
    with torch.inference_mode():
        cos = float((np.asarray(rj_encode(texts[:32])) * np.asarray(st_encode(texts[:32]))).sum(1).min())
        rows = [
            BenchRow("embed", f"{len(texts)} chunks x 256 tokens, batch {BATCH}", "throughput",
                     throughput(rj_encode, texts), "chunks/s", "sentence-transformers",
                     throughput(st_encode, texts)),
            BenchRow("embed", "single query", "p50 latency", query_latency_ms(rj_encode, queries), "ms",
                     "sentence-transformers", query_latency_ms(st_encode, queries), higher_is_better=False),
        ]  # fmt: skip
    notes = (
        f"Machine: {machine_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads; ragjet "
        f"in {ours.precision} (its CPU default here), sentence-transformers in fp32 (its default). "
        f"Same texts (windows of the Python language reference), same run. Minimum cosine "
        f"between ragjet's and sentence-transformers' vectors: {cos:.6f}."
    )
    return rows, notes
