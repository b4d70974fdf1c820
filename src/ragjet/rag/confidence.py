"""The signals an answer's confidence is computed from: how well retrieval matched, how sure the generator was,
how grounded and how copied the text is.

Each signal lands in [0, 1]. Retrieval uses the dense (cosine) similarity of the best sources, because fused rank
scores say nothing absolute; generation uses the geometric-mean token probability, exp(mean logprob), and the
probability of the least likely token (one guessed token is enough to make a short answer wrong); grounding is the
share of the answer's content words found in the cited sources (a fluent answer that the sources do not support is
the failure a reviewer must see); answers_question is the share of the answer's content words that the question
does not already contain and the sources do (the packaged SmolLM2's commonest wrong answer restates the question:
grounded, fluent and empty); copied is the share of the answer's word trigrams found verbatim in a source
(extractive answers copy spans). The signals are combined into one probability by the fitted `ConfidenceModel`
(rag/confidence_model.py); `ragjet eval --calibrate` fits it and reports how well it separates right from wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Cosine similarities of a sentence embedder: below ~0.15 a source is unrelated, above ~0.65 a close match.
UNRELATED_COSINE = 0.15
CLOSE_MATCH_COSINE = 0.65
TOP_SCORES_USED = 3
COPIED_NGRAM = 3  # words per n-gram of the `copied` signal
_WORD = re.compile(r"[a-z0-9_]+")
# Function words carry no evidence of grounding; everything else must appear in some source.
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in is it its not of on or so that the "  # noqa: SIM905
    "their then there these this to was were what when which who why will with you your".split()
)


@dataclass(frozen=True, slots=True)
class ConfidenceSignals:
    """One answer's signals, each in [0, 1]; None where it cannot be measured (no logprobs, too few words)."""

    retrieval: float
    generation: float | None
    weakest_token: float | None
    grounding: float | None
    answers_question: float | None
    copied: float | None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def measure_signals(
    question: str,
    dense_scores: Sequence[float],
    answer: str,
    sources: Sequence[str],
    mean_logprob: float | None,
    min_logprob: float | None,
) -> ConfidenceSignals:
    """Every signal of one answer, from the prompt's cosine scores, the texts and the answer's logprobs."""
    return ConfidenceSignals(
        retrieval=retrieval_confidence(dense_scores),
        generation=_probability(mean_logprob),
        weakest_token=_probability(min_logprob),
        grounding=grounding(answer, sources),
        answers_question=answers_question(question, answer, sources),
        copied=copied(answer, sources),
    )


def retrieval_confidence(dense_scores: Sequence[float]) -> float:
    """Mean of the best `TOP_SCORES_USED` cosine scores, mapped linearly onto [0, 1]; 0 without sources."""
    best = sorted(dense_scores, reverse=True)[:TOP_SCORES_USED]
    if not best:
        return 0.0
    mean = sum(best) / len(best)
    return min(1.0, max(0.0, (mean - UNRELATED_COSINE) / (CLOSE_MATCH_COSINE - UNRELATED_COSINE)))


def generation_confidence(mean_logprob: float) -> float:
    """Geometric-mean probability of the generated tokens."""
    return math.exp(min(0.0, mean_logprob))


def _probability(logprob: float | None) -> float | None:
    return None if logprob is None or math.isnan(logprob) else generation_confidence(logprob)


def grounding(answer: str, sources: Sequence[str]) -> float | None:
    """Share of the answer's content words that occur in the sources; None for an answer without any."""
    words = _content_words(answer)
    if not words:
        return None
    vocabulary = set(_WORD.findall(" ".join(sources).lower()))
    return sum(w in vocabulary for w in words) / len(words)


def answers_question(question: str, answer: str, sources: Sequence[str]) -> float | None:
    """Share of the answer's content words not in the question that occur in the sources: 0 when the answer only
    restates the question; None for an answer without content words."""
    words = _content_words(answer)
    if not words:
        return None
    asked = set(_WORD.findall(question.lower()))
    new = [w for w in words if w not in asked]
    vocabulary = set(_WORD.findall(" ".join(sources).lower()))
    return sum(w in vocabulary for w in new) / len(new) if new else 0.0


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def copied(answer: str, sources: Sequence[str]) -> float | None:
    """Share of the answer's word trigrams that occur in one of the sources; None below three words."""
    grams = _ngrams(_WORD.findall(answer.lower()))
    if not grams:
        return None
    found: set[tuple[str, ...]] = set()
    for source in sources:
        found |= _ngrams(_WORD.findall(source.lower()))
    return sum(g in found for g in grams) / len(grams)


def _ngrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + COPIED_NGRAM]) for i in range(len(words) - COPIED_NGRAM + 1)}
