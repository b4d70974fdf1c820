"""The onnxruntime backend against its slow reference, the torch embedder in fp32: the same vectors from the fp32
export (real MiniLM and a tiny random BERT through the real loader), bounded error and top-k agreement for INT8,
the export cache reused and rebuilt when damaged, and the errors a user can cause."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from ragjet.embed.embedder import Embedder
from ragjet.embed.onnx_cache import CacheKey, entry_problem
from ragjet.embed.onnx_embedder import OnnxOptions
from ragjet.embed.onnx_export import OPSET
from ragjet.ingest.chunker import Chunker
from ragjet.ingest.demo import demo_documents
from ragjet.models import resolve_model
from tests.embed.test_embed import TEXTS

pytest.importorskip("onnxruntime")
MINILM = "all-MiniLM-L6-v2"
QUERIES = ["What does the with statement do?", "How are exceptions chained?", "What is a generator?",
           "How do I define a class?", "What does yield return?", "How does import find modules?",
           "What is a lambda expression?", "How are default argument values evaluated?",
           "What does the global statement do?", "How do comparisons chain?"]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder.load(MINILM, device="cpu", precision="fp32")


def demo_chunks(max_tokens: int) -> list[str]:
    """The demo corpus in chunks of at most `max_tokens`: real text, cheap to embed when short."""
    tokenizer = Tokenizer.from_file(str(resolve_model(MINILM) / "tokenizer.json"))
    chunker = Chunker(tokenizer, max_tokens=max_tokens, overlap_tokens=0)
    return [c.text for doc in demo_documents() for c in chunker.split(doc)]


@pytest.fixture(scope="module")
def short_chunks() -> list[str]:
    return demo_chunks(32)


@pytest.fixture(scope="module")
def calibration() -> tuple[str, ...]:
    """1,024 chunks of <= 16 tokens spread over the corpus: static calibration's minimum, at a third of the cost
    of 32-token ones, with the same measured error."""
    chunks = demo_chunks(16)
    return tuple(chunks[:: len(chunks) // 1024][:1024])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BertModel written by transformers, with a WordPiece tokenizer trained on TEXTS."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(TEXTS * 20, vocab_size=300, min_frequency=1)
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    BertModel(config).eval().save_pretrained(directory, safe_serialization=True)
    return directory


def onnx_embedder(model: str | Path, cache: Path, precision: str = "fp32", **options: object) -> Embedder:
    return Embedder.load(str(model), device="cpu", precision=precision, backend="onnxruntime",
                         onnx=OnnxOptions(cache, **options))  # type: ignore[arg-type]  # fmt: skip


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


def test_fp32_export_matches_the_torch_embedder_on_minilm(fp32: Embedder, cache: Path) -> None:
    ours = onnx_embedder(MINILM, cache)
    assert ours.model_id == fp32.model_id and ours.dim == 384 and ours.precision == "fp32"
    vectors = ours.embed(TEXTS, batch_size=3)  # padded batches of mixed lengths, one truncated text
    assert vectors.dtype == np.float32 and min_cosine(vectors, fp32.embed(TEXTS)) >= 0.9999


def test_fp32_export_matches_the_torch_embedder_on_a_tiny_random_model(tiny_dir: Path, cache: Path) -> None:
    reference = Embedder.load(str(tiny_dir), device="cpu", precision="fp32")
    ours = onnx_embedder(tiny_dir, cache)
    assert ours.dim == 32
    # Element-wise: this tokenizer adds no [CLS]/[SEP], so "" has no tokens and both give the zero vector.
    np.testing.assert_allclose(ours.embed(TEXTS, batch_size=4), reference.embed(TEXTS), atol=1e-5)


def test_int8_vectors_stay_close_to_fp32(
    fp32: Embedder, cache: Path, short_chunks: list[str], calibration: tuple[str, ...]
) -> None:
    """Bounds from this set, measured here (200 held-out chunks of <= 32 tokens; cosine to fp32 min/mean: static
    0.980/0.991, dynamic 0.984/0.993), less a margin for other CPUs' kernels and rounding. The failure they catch:
    quantising the FFN down projections statically gave a minimum of 0.85 on 256-token chunks."""
    held_out = short_chunks[1::5][:200]
    reference = fp32.embed(held_out)
    for scheme in ("static", "dynamic"):
        ours = onnx_embedder(MINILM, cache, "int8", int8_scheme=scheme, calibration_texts=calibration)
        vectors = ours.embed(held_out)
        cosine = (vectors * reference).sum(1)
        assert ours.precision == f"int8 {scheme}" and ours.model_id == fp32.model_id
        assert cosine.min() >= 0.97 and cosine.mean() >= 0.985, scheme


def test_int8_retrieval_agrees_with_fp32(
    fp32: Embedder, cache: Path, short_chunks: list[str], calibration: tuple[str, ...]
) -> None:
    """Top-5 over 400 real chunks for 10 questions: int8 (static) documents and queries, and int8 queries against
    fp32 documents (a collection ingested before precision was switched), against all-fp32. Measured here: 0.92
    of the top-5 shared in both cases, every best hit within the reference's top 2."""
    corpus = short_chunks[2::5][:400]
    int8 = onnx_embedder(MINILM, cache, "int8", calibration_texts=calibration)
    reference = top_k(fp32.embed(QUERIES), fp32.embed(corpus))
    for queries, documents in ((int8, int8), (int8, fp32)):
        found = top_k(queries.embed(QUERIES), documents.embed(corpus))
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, reference, strict=True)])
        assert overlap >= 0.8, (queries.precision, documents.precision)
        assert all(a[0] in b[:2] for a, b in zip(found, reference, strict=True))  # the best hit stays near the top


def top_k(queries: np.ndarray, documents: np.ndarray, k: int = 5) -> list[list[int]]:
    return [list(row) for row in np.argsort(-(queries @ documents.T), axis=1)[:, :k]]


def test_the_export_is_reused_and_a_damaged_one_rebuilt(tiny_dir: Path, tmp_path: Path) -> None:
    first = onnx_embedder(tiny_dir, tmp_path)
    key = CacheKey(first.model_id, OPSET, "fp32")
    model, meta = key.folder(tmp_path) / "model.onnx", key.folder(tmp_path) / "meta.json"
    expected, written = first.embed(TEXTS), model.stat().st_mtime_ns
    assert entry_problem(key.folder(tmp_path), key) is None
    onnx_embedder(tiny_dir, tmp_path)
    assert model.stat().st_mtime_ns == written  # reused, not exported again

    model.write_bytes(model.read_bytes()[:1000])  # truncated, as by a full disk
    assert "corrupted" in (entry_problem(key.folder(tmp_path), key) or "")
    np.testing.assert_allclose(onnx_embedder(tiny_dir, tmp_path).embed(TEXTS), expected, atol=1e-6)

    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"format_version": 0}))  # an older ragjet's entry
    assert "stale" in (entry_problem(key.folder(tmp_path), key) or "")
    np.testing.assert_allclose(onnx_embedder(tiny_dir, tmp_path).embed(TEXTS), expected, atol=1e-6)
    assert entry_problem(key.folder(tmp_path), key) is None


def test_static_int8_calibrates_on_the_demo_corpus_without_enough_chunks(tiny_dir: Path, tmp_path: Path) -> None:
    int8 = onnx_embedder(tiny_dir, tmp_path, "int8", calibration_texts=tuple(TEXTS))  # 8 texts: too few
    meta = json.loads((CacheKey(int8.model_id, OPSET, "int8-static").folder(tmp_path) / "meta.json").read_text())
    assert meta["calibration"] == "demo corpus chunks" and meta["num_calibration_chunks"] == 1024
    assert int8.embed(TEXTS).shape == (len(TEXTS), 32)


def test_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use embed.backend = 'torch' for bf16"):
        onnx_embedder(MINILM, tmp_path, "bf16")
    with pytest.raises(ValueError, match="int8_scheme 'weekly' is not one of static, dynamic"):
        OnnxOptions(tmp_path, int8_scheme="weekly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend 'tensorflow' is not one of torch, onnxruntime"):
        Embedder.load(MINILM, device="cpu", backend="tensorflow")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'ragjet\[onnx\]'"):
        onnx_embedder(MINILM, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_models_calibrated_on_other_chunks_are_cached_apart(calibration: tuple[str, ...]) -> None:
    """A collection's own chunks name their INT8 model (a digest in the cache key); the demo fallback and the
    dynamic scheme, which calibrate on nothing given, keep one name each."""
    from ragjet.embed.onnx_build import int8_variant
    from ragjet.embed.onnx_quant import Calibration

    tokenizer = Tokenizer.from_file(str(resolve_model(MINILM) / "tokenizer.json"))
    static, dynamic = OnnxOptions(int8_scheme="static"), OnnxOptions(int8_scheme="dynamic")
    ours, theirs = Calibration(tokenizer, 256, calibration), Calibration(tokenizer, 256, calibration[::-1])
    assert int8_variant(static, ours).startswith("int8-static-")
    assert int8_variant(static, ours) != int8_variant(static, theirs)
    assert int8_variant(static, Calibration(tokenizer, 256, calibration[:10])) == "int8-static"  # too few: demo
    assert int8_variant(dynamic, ours) == "int8-dynamic"
