"""The official openai client against a real ragjet server, unchanged: chat (plain and streamed), embeddings."""

from __future__ import annotations

import math

import openai
import pytest

from support.stack import require_layers

require_layers()

from support.live_server import COLLECTION, LiveServer

QUESTION = "Who designed the Fresnel lens used in lighthouses?"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


def test_chat_completion_answers_with_citations(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=COLLECTION, messages=[{"role": "user", "content": QUESTION}], max_tokens=8, temperature=0
    )
    choice = completion.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None and completion.usage.completion_tokens >= 1
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    info = completion.model_extra["ragjet"]
    sources = [c["source"] for c in info["citations"]]
    assert sources[0].endswith("lighthouse.md")  # the real embedder ranks the lighthouse document first
    assert {"embed", "search", "prompt", "total"} <= {k.removesuffix("_ms") for k in info["timings_ms"]}
    assert 0.0 <= info["confidence"] <= 1.0


def test_streamed_answer_equals_the_plain_one(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    plain = client.chat.completions.create(model=COLLECTION, messages=messages, max_tokens=10, temperature=0)
    chunks = list(
        client.chat.completions.create(model=COLLECTION, messages=messages, max_tokens=10, temperature=0, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content  # greedy decoding: same tokens either way
    assert chunks[0].model_extra["ragjet"]["citations"]  # citations arrive before the first token
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_extra_body_options_choose_the_collection_and_top_k(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="any-name",
        messages=[{"role": "user", "content": "How does sourdough rise?"}],
        max_tokens=4,
        temperature=0,
        extra_body={"ragjet": {"collection": COLLECTION, "top_k": 1}},
    )
    citations = completion.model_extra["ragjet"]["citations"]
    assert len(citations) == 1 and citations[0]["source"].endswith("bread.md")


def test_embeddings_are_normalised_minilm_vectors(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a lighthouse", "a volcano"])
    assert [d.index for d in response.data] == [0, 1]
    for item in response.data:
        assert len(item.embedding) == 384
        assert math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-4)


def test_client_errors_surface_as_openai_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="nope"):
        client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}], extra_body={"ragjet": {"collection": "nope"}}
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=COLLECTION, messages=[{"role": "user", "content": "hi"}], temperature=9)
