"""ragjet's LangChain adapters through LangChain's own standard test suites (langchain-tests), against the real
local server of the serving tests; then what the standard suites do not look at: citations and confidence in the
response metadata, retriever metadata, and typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
)
from langchain_tests.unit_tests import ChatModelUnitTests

from ragjet.client.models import NotFoundError, RagjetConnectionError
from ragjet.integrations.langchain import ChatRagjet, RagjetEmbeddings, RagjetRetriever
from support.live_server import COLLECTION, LiveServer

SERVER: dict[str, str] = {}  # the live server's URL, for the suites' class-level parameters


@pytest.fixture(autouse=True)
def _server(live_server: LiveServer) -> None:
    SERVER["url"] = live_server.url


class TestChatRagjetUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatRagjet]:
        return ChatRagjet

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": "http://127.0.0.1:1", "collection": COLLECTION}


class TestChatRagjetIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatRagjet]:
        return ChatRagjet

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": SERVER["url"], "collection": COLLECTION, "max_tokens": 12}

    @property
    def has_tool_calling(self) -> bool:
        return False  # a grounded answerer: tools are for the frameworks around it

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[str]]:
        return {"invoke": [], "stream": []}


class TestRagjetRetriever(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[RagjetRetriever]:
        return RagjetRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"base_url": SERVER["url"], "collection": COLLECTION}

    @property
    def retriever_query_example(self) -> str:
        return "Which volcano is on Sicily?"


class TestRagjetEmbeddings(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[RagjetEmbeddings]:
        return RagjetEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"base_url": SERVER["url"]}


def test_answers_carry_citations_confidence_and_usage(live_server: LiveServer) -> None:
    chat = ChatRagjet(base_url=live_server.url, collection=COLLECTION, max_tokens=6)
    message = chat.invoke([HumanMessage("What does a Fresnel lens do?")])
    meta = message.response_metadata
    assert meta["citations"][0]["source"].endswith("lighthouse.md") and isinstance(meta["confidence"], float)
    assert message.usage_metadata and message.usage_metadata["output_tokens"] <= 6
    streamed = list(chat.stream("What does a Fresnel lens do?"))
    assert "".join(str(c.content) for c in streamed) == message.content  # greedy: the same answer
    assert streamed[-1].response_metadata["citations"] == meta["citations"]


def test_retrieved_documents_carry_ragjet_metadata(live_server: LiveServer) -> None:
    docs = RagjetRetriever(base_url=live_server.url, collection=COLLECTION, k=2).invoke("bread rising")
    assert len(docs) == 2 and docs[0].metadata["source"].endswith("bread.md")
    assert {"title", "heading", "page", "score", "dense_score", "rank", "chunk_id"} <= set(docs[0].metadata)


def test_failures_are_typed(live_server: LiveServer) -> None:
    with pytest.raises(NotFoundError, match="collection_not_found"):
        ChatRagjet(base_url=live_server.url, collection="absent").invoke("hi")
    with pytest.raises(RagjetConnectionError):
        RagjetRetriever(base_url="http://127.0.0.1:9", collection=COLLECTION).invoke("lava")
