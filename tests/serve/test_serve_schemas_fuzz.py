"""Property tests of the request models: any JSON a client can send is either accepted or refused with a
ValidationError (a 400), never another exception (a 500), and accepted requests keep their invariants."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ragjet.rag.requests import SearchParams
from ragjet.serve.schemas import ChatCompletionRequest, EmbeddingRequest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "robot", ""]), "content": json_values}
    ),
    max_size=4,
)
chat_bodies = st.fixed_dictionaries(
    {"messages": messages | json_values},
    optional={
        "model": json_values,
        "stream": json_values,
        "max_tokens": st.integers(-5, 10_000) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "top_p": st.floats(-0.5, 1.5) | json_values,
        "stop": json_values,
        "n": st.integers(-1, 3),
        "ragjet": st.fixed_dictionaries(
            {}, optional={"top_k": json_values, "collection": json_values, "deadline_s": json_values}
        )
        | json_values,
    },
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(chat_bodies)
def test_chat_requests_validate_or_refuse_cleanly(body: dict[str, object]) -> None:
    try:
        request = ChatCompletionRequest.model_validate_json(json.dumps(body))
    except ValidationError:
        return
    assert request.question().strip()  # an accepted request always has a question
    assert 0 <= request.temperature <= 2 and 0 < request.top_p <= 1
    try:
        params = request.ask_params("docs")  # the one model every transport's request becomes
    except ValidationError:
        return  # e.g. more stop strings than any transport accepts
    assert params.question == request.question() and all(isinstance(s, str) for s in params.stop)


@FUZZ
@given(st.fixed_dictionaries({"query": json_values}, optional={"top_k": json_values, "filters": json_values}))
def test_search_requests_validate_or_refuse_cleanly(body: dict[str, object]) -> None:
    try:
        request = SearchParams.model_validate_json(json.dumps(body))
    except ValidationError:
        return
    assert request.query.strip() and (request.top_k is None or 1 <= request.top_k <= 100)


@FUZZ
@given(st.fixed_dictionaries({"input": json_values}))
def test_embedding_requests_validate_or_refuse_cleanly(body: dict[str, object]) -> None:
    try:
        request = EmbeddingRequest.model_validate_json(json.dumps(body))
    except ValidationError:
        return
    assert isinstance(request.input, str) or 1 <= len(request.input) <= 2048
