"""ragjet's LlamaIndex adapters against the real local server of the serving tests: nodes with ragjet's metadata,
completions and chats with citations, streaming that adds up, embeddings of the server's model, typed errors."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.schema import QueryBundle

from ragjet.client.models import NotFoundError, RagjetConnectionError
from ragjet.integrations.llama_index import RagjetEmbedding, RagjetLLM, RagjetNodeRetriever
from support.live_server import COLLECTION, LiveServer

QUESTION = "What does a Fresnel lens do?"


def test_the_retriever_returns_scored_nodes_with_ragjet_metadata(live_server: LiveServer) -> None:
    retriever = RagjetNodeRetriever(base_url=live_server.url, collection=COLLECTION, k=2)
    nodes = retriever.retrieve("Which volcano is on Sicily?")
    assert len(nodes) == 2 and nodes[0].node.metadata["source"].endswith("volcano.md")
    assert {"title", "heading", "page", "dense_score", "rank"} <= set(nodes[0].node.metadata)
    assert nodes[0].score is not None and nodes[0].score >= nodes[1].score  # type: ignore[operator]
    again = asyncio.run(retriever.aretrieve(QueryBundle("Which volcano is on Sicily?")))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]


def test_completions_chats_and_streams_carry_the_grounded_answer(live_server: LiveServer) -> None:
    llm = RagjetLLM(base_url=live_server.url, collection=COLLECTION, max_tokens=6)
    completion = llm.complete(QUESTION)
    extras = completion.additional_kwargs
    assert extras["citations"][0]["source"].endswith("lighthouse.md") and extras["completion_tokens"] <= 6
    streamed = list(llm.stream_complete(QUESTION))
    assert "".join(r.delta or "" for r in streamed) == streamed[-1].text == completion.text  # greedy
    assert streamed[-1].additional_kwargs["citations"] == extras["citations"]
    chat = llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
                     ChatMessage(role=MessageRole.USER, content=QUESTION)])  # fmt: skip
    assert chat.message.content == completion.text  # the last user message is the question
    assert asyncio.run(llm.acomplete(QUESTION)).text == completion.text


def test_embeddings_are_the_servers_model(live_server: LiveServer) -> None:
    embedding = RagjetEmbedding(base_url=live_server.url)
    vectors = embedding.get_text_embedding_batch(["lava", "bread"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert embedding.get_query_embedding("lava") == pytest.approx(vectors[0], abs=1e-5)
    assert asyncio.run(embedding.aget_query_embedding("lava")) == pytest.approx(vectors[0], abs=1e-5)


def test_failures_are_typed(live_server: LiveServer) -> None:
    with pytest.raises(NotFoundError, match="collection_not_found"):
        RagjetLLM(base_url=live_server.url, collection="absent").complete("hi")
    with pytest.raises(RagjetConnectionError):
        RagjetNodeRetriever(base_url="http://127.0.0.1:9").retrieve("lava")
    with pytest.raises(ValueError, match="has none"):
        RagjetLLM(base_url=live_server.url).chat([ChatMessage(role=MessageRole.SYSTEM, content="only a system")])
