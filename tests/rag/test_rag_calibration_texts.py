"""embed.calibration_collection: INT8 calibration reads the named collection's own chunks, and a name that cannot
serve (unknown, too small) is refused at load with the setting named, before any model is built."""

from __future__ import annotations

import pytest

from ragjet.config import Settings
from ragjet.rag.pipeline import RagPipeline, calibration_texts
from support.tiny_models import COLLECTION

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_collections_chunks_are_read_for_calibration(pipeline: RagPipeline) -> None:
    registry = pipeline.collections()
    texts = registry.chunk_texts(COLLECTION, 10_000)
    info = registry.info(COLLECTION)
    assert len(texts) == info.num_chunks and all(isinstance(t, str) and t for t in texts)
    assert registry.chunk_texts(COLLECTION, 3) == texts[:3]


async def test_an_unusable_calibration_collection_is_refused_naming_the_setting(
    rag_settings: Settings, pipeline: RagPipeline
) -> None:
    assert calibration_texts(rag_settings) == ()  # none named: the demo corpus, chosen in the quantiser
    small = rag_settings.model_copy(update={"embed": rag_settings.embed.model_copy(
        update={"calibration_collection": COLLECTION})})  # fmt: skip
    with pytest.raises(ValueError, match=rf"embed.calibration_collection '{COLLECTION}' holds \d+ chunks"):
        calibration_texts(small)
    missing = rag_settings.model_copy(update={"embed": rag_settings.embed.model_copy(
        update={"calibration_collection": "nope"})})  # fmt: skip
    with pytest.raises(ValueError, match="embed.calibration_collection 'nope'"):
        calibration_texts(missing)
