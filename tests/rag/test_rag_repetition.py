"""A generation that loops is cut where it starts to repeat a sentence: the reader gets the answer once (and one
repeat), and the engine stops spending decode time on the rest."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from support.stack import require_layers

require_layers()

from ragjet.llm.backends import TextDelta  # noqa: E402
from ragjet.rag.generation import repeats_a_sentence  # noqa: E402
from ragjet.rag.pipeline import RagPipeline  # noqa: E402
from ragjet.rag.types import AskOptions  # noqa: E402
from support.tiny_models import COLLECTION  # noqa: E402

LOOP = ["Basaltic lava ", "is runny and flows fast. ", "It comes from Etna. ", "Basaltic lava is runny ",
        "and flows fast. ", "Basaltic lava is runny and flows fast. ", "Never sent."]  # fmt: skip


def test_a_repeated_sentence_is_detected_once_it_is_finished() -> None:
    assert not repeats_a_sentence("Lava is hot and runny. Lava is hot and runny")  # the second may still grow
    assert repeats_a_sentence("Lava is hot and runny. Etna erupts. lava is  hot and runny. ")
    assert not repeats_a_sentence("Yes. Yes. Yes. ")  # short sentences repeat legitimately
    assert not repeats_a_sentence("if x is None:\n    a()\nif x is None:\n    b()\n")  # so do short code lines
    assert not repeats_a_sentence("Etna is on Sicily. Etna is on Sicily, near Catania. ")
    assert repeats_a_sentence("The answer to your question is:\n\nThe answer to your question is:\n\nThe")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_looping_generation_is_cut_at_the_repeat(pipeline: RagPipeline, monkeypatch: pytest.MonkeyPatch):
    consumed: list[str] = []

    async def loops(prompt: object, params: object) -> AsyncGenerator[TextDelta, None]:
        for piece in LOOP:
            consumed.append(piece)
            yield TextDelta(piece, 4)

    monkeypatch.setattr(pipeline._backend, "stream", loops)
    options = AskOptions(collection=COLLECTION, max_tokens=64)
    answer = await pipeline.ask("Which lava flows quickly?", options)
    assert answer.text == "".join(LOOP[:5]) and answer.finish_reason == "stop"  # cut as the repeat finished
    assert consumed == LOOP[:5]  # the stream was closed: nothing more was generated
    looping_allowed = pipeline.settings.rag.model_copy(update={"stop_on_repetition": False})
    monkeypatch.setattr(pipeline.settings, "rag", looping_allowed)
    consumed.clear()
    assert (await pipeline.ask("Which lava flows quickly?", options)).text == "".join(LOOP)
