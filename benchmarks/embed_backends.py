"""Embedder backends and precisions in one run: torch fp32 and bf16, ONNX Runtime fp32 and INT8 (static and
dynamic), and sentence-transformers, on the same model, texts and host.

Speed: chunks/s on 256-token windows of the demo corpus and single-query p50, each against today's default (the
torch embedder at its auto precision). Quality: exact dense retrieval (every document embedded whole, truncated at
256 tokens, cosine top-k, no BM25) on the shipped sets, recall@5 and nDCG@10 against torch fp32, the reference.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.embed import BATCH, chunks_of_256_tokens, query_latency_ms, throughput
from benchmarks.report import BenchRow, machine_description
from ragjet.embed.embedder import Embedder
from ragjet.embed.onnx_embedder import OnnxOptions
from ragjet.eval.datasets import EvalDataset, load_dataset
from ragjet.eval.metrics import ndcg_at_k, recall_at_k
from ragjet.hardware import host
from ragjet.models import resolve_model

TITLE = "Embedder backends (all-MiniLM-L6-v2: torch, ONNX Runtime fp32/INT8, sentence-transformers)"
SUITE = "embed_backends"
MODEL = "all-MiniLM-L6-v2"
DATASETS = ("python-beir", "pydoc-squad")
QUERIES = ["What does the with statement do?", "How are exceptions chained?", "What is a generator?"]

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    encode: Encode
    load_s: float  # load, plus export and quantisation where the cache was empty


def run(quick: bool) -> tuple[list[BenchRow], str]:
    with tempfile.TemporaryDirectory() as cache:
        variants = load_variants(Path(cache))
        default, reference = variants[0], variants[1]
        texts = chunks_of_256_tokens(Embedder.load(MODEL, device="cpu"), 64 if quick else 256)
        queries = QUERIES * (3 if quick else 20)
        datasets = [load_dataset(name).limited(5 if quick else None) for name in DATASETS]
        speed = {v.name: (throughput(v.encode, texts), query_latency_ms(v.encode, queries)) for v in variants}
        quality = {v.name: [retrieval(v.encode, d) for d in datasets] for v in variants}
        cosine = {v.name: float((v.encode(texts[:64]) * reference.encode(texts[:64])).sum(1).min()) for v in variants}
    rows = []
    for v in variants[1:]:
        rows += [
            BenchRow(SUITE, f"{v.name}: {len(texts)} chunks x 256 tokens, batch {BATCH}", "throughput",
                     speed[v.name][0], "chunks/s", default.name, speed[default.name][0]),
            BenchRow(SUITE, f"{v.name}: single query", "p50 latency", speed[v.name][1], "ms", default.name,
                     speed[default.name][1], higher_is_better=False),
        ]  # fmt: skip
    for v in variants[2:]:
        for d, scores, ref in zip(datasets, quality[v.name], quality[reference.name], strict=True):
            rows += [BenchRow(SUITE, f"{v.name}: {d.name} ({len(d.queries)} queries)", metric, scores[metric], "",
                              reference.name, ref[metric]) for metric in ("recall@5", "ndcg@10")]  # fmt: skip
    return rows, notes(variants, cosine, datasets)


def load_variants(cache: Path) -> list[Variant]:
    """Today's default first, torch fp32 (the accuracy reference) second."""
    from sentence_transformers import SentenceTransformer

    specs = [("torch auto", "torch", "auto", "static"), ("torch fp32", "torch", "fp32", "static"),
             ("torch bf16", "torch", "bf16", "static"), ("onnxruntime fp32", "onnxruntime", "fp32", "static"),
             ("onnxruntime int8 static", "onnxruntime", "int8", "static"),
             ("onnxruntime int8 dynamic", "onnxruntime", "int8", "dynamic")]  # fmt: skip
    variants = []
    for name, backend, precision, scheme in specs:
        started = time.perf_counter()
        embedder = Embedder.load(MODEL, "cpu", precision, backend, OnnxOptions(cache, scheme))  # type: ignore[arg-type]
        label = f"{name} ({embedder.precision})" if precision == "auto" else name
        variants.append(Variant(label, embedder_encode(embedder), time.perf_counter() - started))
    started = time.perf_counter()
    theirs = SentenceTransformer(str(resolve_model(MODEL)), device="cpu")
    st_encode = lambda t: np.asarray(theirs.encode(t, batch_size=BATCH, normalize_embeddings=True))  # noqa: E731
    return [*variants, Variant("sentence-transformers fp32", st_encode, time.perf_counter() - started)]


def embedder_encode(embedder: Embedder) -> Encode:
    return lambda texts: embedder.embed(texts, batch_size=BATCH)


def retrieval(encode: Encode, dataset: EvalDataset) -> dict[str, float]:
    """Mean recall@5 and nDCG@10 of exact cosine search over the whole documents."""
    ids = [doc.id for doc in dataset.corpus]
    documents = encode([f"{doc.title}\n{doc.text}" if doc.title else doc.text for doc in dataset.corpus])
    scores = encode([q.text for q in dataset.queries]) @ documents.T  # (Q, D)
    ranked = [[ids[i] for i in np.argsort(-row)[:10]] for row in scores]
    return {
        "recall@5": float(np.mean([recall_at_k(r, q.qrels, 5) for r, q in zip(ranked, dataset.queries, strict=True)])),
        "ndcg@10": float(np.mean([ndcg_at_k(r, q.qrels, 10) for r, q in zip(ranked, dataset.queries, strict=True)])),
    }


def notes(variants: list[Variant], cosine: dict[str, float], datasets: list[EvalDataset]) -> str:
    bf16 = "native (oneDNN bf16 matmuls)" if host().onednn_bf16 else "emulated (no bf16 matmul support on this CPU)"
    loads = ", ".join(f"{v.name} {v.load_s:.1f} s" for v in variants)
    cosines = ", ".join(f"{name} {value:.4f}" for name, value in cosine.items())
    sizes = ", ".join(f"{d.name} {len(d.corpus)} documents / {len(d.queries)} queries" for d in datasets)
    return (
        f"Machine: {machine_description()}; {torch.get_num_threads()} torch threads and as many ONNX Runtime "
        f"intra-op threads. torch bf16 here is {bf16}. Speed rows compare each variant with today's default "
        f"(torch at precision auto); quality rows with torch fp32. Load times, export and quantisation from an "
        f"empty cache included: {loads}. INT8 static was calibrated on the fallback set (1,024 chunks of 128 "
        f"tokens of the demo corpus, the Python language reference, which pydoc-squad's contexts also come from). "
        f"Minimum cosine to torch fp32 over 64 of the chunks: {cosines}. Retrieval sets: {sizes}; one query moves "
        f"python-beir's recall@5 by {1 / len(datasets[0].queries):.3f}."
    )
