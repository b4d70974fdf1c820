"""Confidence: bounded signals, the fitted model that combines them, and the review flag it drives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragjet.config import RagSettings
from ragjet.rag.answering import PreparedRequest, build_answer
from ragjet.rag.confidence import (
    CLOSE_MATCH_COSINE,
    UNRELATED_COSINE,
    ConfidenceSignals,
    answers_question,
    copied,
    generation_confidence,
    grounding,
    measure_signals,
    retrieval_confidence,
)
from ragjet.rag.confidence_model import PACKAGED_MODEL, SIGNAL_NAMES, ConfidenceModel, load_confidence_model
from ragjet.rag.deadline import Deadline
from ragjet.rag.generation import GenerationTrace
from ragjet.rag.prompt import BuiltPrompt
from ragjet.rag.types import Citation, StageTimings

cosines = st.lists(st.floats(-1.0, 1.0), max_size=10)
logprobs = st.one_of(st.none(), st.floats(-50.0, 0.0))
unit = st.one_of(st.none(), st.floats(0.0, 1.0))
SOURCE = "Augustin Fresnel designed the lens in 1822 to replace heavy mirrors."


@given(cosines, st.text(max_size=80), logprobs, logprobs)
def test_every_signal_stays_in_unit_interval(scores, answer, mean_logprob, min_logprob):
    signals = measure_signals("Who designed the lens?", scores, answer, [SOURCE], mean_logprob, min_logprob)
    assert all(v is None or 0.0 <= v <= 1.0 for v in signals.as_dict().values())


@given(st.floats(0.0, 1.0), unit, unit, unit, unit, unit)
def test_packaged_confidence_is_a_probability(retrieval, generation, weakest, grounded, new, copy):
    signals = ConfidenceSignals(retrieval, generation, weakest, grounded, new, copy)
    assert 0.0 < load_confidence_model().probability(signals) < 1.0


@given(cosines, st.floats(0.0, 0.5))
def test_better_retrieval_never_lowers_the_retrieval_signal(scores, boost):
    assert retrieval_confidence([s + boost for s in scores]) >= retrieval_confidence(scores)


def test_anchor_points():
    assert retrieval_confidence([]) == 0.0
    assert retrieval_confidence([UNRELATED_COSINE] * 3) == 0.0
    assert retrieval_confidence([CLOSE_MATCH_COSINE, 0.9, 0.99]) == 1.0
    assert retrieval_confidence([0.99, UNRELATED_COSINE, UNRELATED_COSINE, 0.99]) == 1.0  # the best three, in any order
    assert math.isclose(generation_confidence(math.log(0.5)), 0.5)
    signals = measure_signals("Who?", [0.65], "Fresnel", [SOURCE], math.log(0.5), math.log(0.1))
    assert math.isclose(signals.weakest_token or 0.0, 0.1) and signals.copied is None  # one word: no trigram
    assert measure_signals("Who?", [0.65], "x", [SOURCE], None, float("nan")).generation is None


def test_grounding_counts_content_words_found_in_the_sources():
    assert grounding("Fresnel designed the lens in 1822.", [SOURCE]) == 1.0
    assert grounding("The lens was invented by Edison in 1900.", [SOURCE]) == 0.25  # lens of lens/invented/edison/1900
    assert grounding("the of and", [SOURCE]) is None  # nothing to check


def test_answers_question_counts_only_grounded_words_the_question_lacks():
    question = "Who designed the lens?"
    assert answers_question(question, "Fresnel designed the lens.", [SOURCE]) == 1.0  # fresnel: new and in the source
    assert answers_question(question, "The lens was designed.", [SOURCE]) == 0.0  # restates the question
    assert answers_question(question, "Edison or Fresnel designed it", [SOURCE]) == pytest.approx(1 / 2)
    assert answers_question(question, "the of and", [SOURCE]) is None


def test_copied_counts_trigrams_found_verbatim():
    assert copied("designed the lens in 1822", [SOURCE]) == 1.0
    assert copied("the lens in 1822 replaced mirrors", [SOURCE]) == pytest.approx(2 / 4)  # the lens in, lens in 1822
    assert copied("a b", [SOURCE]) is None


def test_the_packaged_model_is_valid_and_prefers_supported_answers():
    model = ConfidenceModel.from_json(PACKAGED_MODEL)
    assert set(model.features) <= set(SIGNAL_NAMES)
    strong, weak = ConfidenceSignals(1.0, 0.9, 0.8, 1.0, 1.0, 1.0), ConfidenceSignals(0.1, 0.2, 0.01, 0.1, 0.0, 0.0)
    assert model.probability(strong) > model.probability(weak)


@pytest.mark.parametrize(
    ("body", "message"),
    [("{", "not a confidence model"), ('{"features": ["luck"], "weights": [1], "bias": 0, "fill": [0]}', "luck"),
     ('{"features": ["copied"], "weights": [1, 2], "bias": 0, "fill": [0]}', "one weight")],
)  # fmt: skip
def test_a_bad_model_file_is_refused_with_its_path(tmp_path: Path, body: str, message: str):
    path = tmp_path / "model.json"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        ConfidenceModel.from_json(path)
    with pytest.raises(ValueError, match="not found"):
        ConfidenceModel.from_json(tmp_path / "missing.json")


def _answer(text: str, source: str, cosine: float, token_logprobs: list[float], settings: RagSettings):
    citation = Citation(1, "c1", "doc.md", "doc", "", None, cosine, source)
    request = PreparedRequest("r1", Deadline.start(None), BuiltPrompt("", 10, [citation], 0, False), [cosine],
                              StageTimings())  # fmt: skip
    trace = GenerationTrace()
    trace.record(text, len(token_logprobs), token_logprobs)
    return build_answer("Who designed the lens?", request, trace, None, False, settings)


def test_an_answer_with_weak_signals_goes_to_review_and_a_supported_one_does_not():
    settings = RagSettings()
    weak = _answer("Edison patented it in Menlo Park", SOURCE, 0.2, [-2.5, -4.0, -6.0], settings)
    strong = _answer("Fresnel designed the lens in 1822", SOURCE, 0.8, [-0.05, -0.1, -0.02], settings)
    assert weak.needs_review and weak.confidence is not None and weak.confidence < settings.review_threshold
    assert not strong.needs_review and strong.confidence is not None and strong.confidence > weak.confidence
    assert strong.confidence_signals is not None and strong.confidence_signals.copied == 1.0


def test_the_setting_chooses_the_model(tmp_path: Path):
    path = tmp_path / "always-sure.json"
    path.write_text(ConfidenceModel(("copied",), (0.0,), 30.0, (0.0,)).to_json({"fitted": "by hand, for this test"}))
    settings = RagSettings(confidence_model=path)
    weak = _answer("Edison patented it in Menlo Park", SOURCE, 0.2, [-2.5, -4.0, -6.0], settings)
    assert weak.confidence == pytest.approx(1.0) and not weak.needs_review


async def test_a_pipeline_with_a_bad_model_file_fails_at_start_before_loading_models(tmp_path: Path):
    from ragjet.config import load_settings
    from ragjet.rag.pipeline import RagPipeline

    settings = load_settings(data_dir=tmp_path, rag={"confidence_model": tmp_path / "missing.json"})
    pipeline = RagPipeline(settings)
    with pytest.raises(ValueError, match="confidence model not found"):
        await pipeline.start()
    assert not pipeline.is_ready
