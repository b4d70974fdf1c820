"""Sampling parameters refuse nonsense with a message naming the parameter."""

from __future__ import annotations

import pytest

from ragjet.llm.sampling_params import SamplingParams


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"presence_penalty": float("inf")}, "presence_penalty"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"stop": ["ok", ""]}, "stop"),
    ],
)
def test_nonsense_is_refused(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SamplingParams(**kwargs)  # type: ignore[arg-type]


def test_defaults_and_greedy() -> None:
    assert not SamplingParams().is_greedy
    assert SamplingParams(temperature=0, max_tokens=1, stop=["\n"], seed=3).is_greedy
