"""How many retrieved chunks go into the prompt: early exit on the retrieval side.

Small models answer worse from long contexts, and every prompt token costs prefill time, so in `adaptive` mode
the prompt keeps only the chunks whose cosine similarity to the question is within `context_score_gap` of the
best one. The default, 0.03, keeps a second chunk only when it matches about as well as the first: on the shipped
pydoc-squad set (every paragraph a document, several per topic) the packaged SmolLM2 answered the first 90
questions with F1 0.120 and the gold span in 29% of answers at 0.03, against 0.095 and 19% at 0.2, which let in
same-topic distractors, and 0.100 / 28% with the best chunk alone (which is the wrong one for 18% of questions).
A larger generator reads longer contexts well: raise the gap (or use `fixed`) for it.

When even the best chunk is below `not_found_below`, nothing relevant was found: the pipeline answers so at once
instead of letting the model invent an answer (relevant questions there scored 0.39-0.83, off-topic ones 0.07-0.29,
median 0.12). `fixed` is the previous behaviour: the top_k chunks, whatever their scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragjet.config import RagSettings
from ragjet.rag.types import Answer, StageTimings
from ragjet.retrieve import SearchHit

NOT_FOUND_TEXT = "I could not find this in the documents."
NOT_FOUND = "not found in the documents"  # Answer.degraded of such an answer


@dataclass(frozen=True, slots=True)
class ContextChoice:
    hits: list[SearchHit]  # in the retriever's order, best first
    not_found: bool = False  # no chunk is relevant enough: answer NOT_FOUND_TEXT without generating


def choose_context(hits: list[SearchHit], settings: RagSettings) -> ContextChoice:
    """The hits worth a place in the prompt (the prompt builder still caps them at top_k)."""
    if settings.context == "fixed":
        return ContextChoice(hits)
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    if not dense:  # a keyword-only answer (the vector index failed): no similarity to judge by
        return ContextChoice(hits)
    best = max(dense)
    if best < settings.not_found_below:
        return ContextChoice([], not_found=True)
    floor = best - settings.context_score_gap
    return ContextChoice([h for h in hits if h.dense_score is not None and h.dense_score >= floor])


def not_found_answer(request_id: str, timings: StageTimings) -> Answer:
    """The answer when nothing relevant was retrieved: said plainly, with no sources and no generation."""
    return Answer(request_id, NOT_FOUND_TEXT, [], timings, degraded=NOT_FOUND)
