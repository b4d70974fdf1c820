"""ragjet in LangChain (`pip install ragjet[langchain]`): a retriever, a chat model and embeddings, each a thin
adapter over the typed client (ragjet.client), so they speak to a running ragjet server.

    from ragjet.integrations.langchain import ChatRagjet, RagjetEmbeddings, RagjetRetriever
    retriever = RagjetRetriever(base_url="http://127.0.0.1:8000", collection="python-docs", k=4)
    llm = ChatRagjet(base_url="http://127.0.0.1:8000", collection="python-docs")
    message = llm.invoke("What does yield do?")
    message.response_metadata["citations"], message.response_metadata["confidence"]

The chat model answers the conversation's last user message from its collection: retrieval, the grounded prompt
and the citations are ragjet's own, so the model needs no retriever in front of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ragjet.client import AsyncClient, Client, StreamDone, TextDelta
from ragjet.client.models import Answer, SearchResultOut

DEFAULT_URL = "http://127.0.0.1:8000"


class _Server:
    """What every adapter needs to reach ragjet; clients are made per call, so adapters pickle and copy freely."""

    base_url: str
    api_key: str | None
    timeout_s: float

    def _client(self) -> Client:
        return Client(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s)

    def _async_client(self) -> AsyncClient:
        return AsyncClient(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s)


def _document(hit: SearchResultOut) -> Document:
    metadata = hit.model_dump(exclude={"text"})
    return Document(page_content=hit.text, metadata=metadata, id=hit.chunk_id)


class RagjetRetriever(_Server, BaseRetriever):
    """ragjet's two-stage search over one collection; metadata: source, title, heading, page, scores, rank."""

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = 120.0
    collection: str | None = None  # None: the server's default collection
    k: int = Field(4, ge=1, le=100)
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        with self._client() as client:
            found = client.search(query, self.collection, kwargs.get("k", self.k), kwargs.get("filters", self.filters))
        return [_document(hit) for hit in found.results]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        async with self._async_client() as client:
            found = await client.search(query, self.collection, kwargs.get("k", self.k),
                                        kwargs.get("filters", self.filters))  # fmt: skip
        return [_document(hit) for hit in found.results]


def _question(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human" and message.text.strip():
            return message.text
    raise ValueError("ragjet answers a user message: the conversation has none")


def _metadata(answer: Answer) -> dict[str, Any]:
    return {"model_name": "ragjet", "finish_reason": answer.finish_reason, "id": answer.id,
            "citations": [c.model_dump() for c in answer.citations], "confidence": answer.confidence,
            "needs_review": answer.needs_review, "degraded": answer.degraded, "from_cache": answer.from_cache,
            "timings_ms": answer.timings_ms, "review_id": answer.review_id}  # fmt: skip


def _usage(answer: Answer) -> UsageMetadata:
    return UsageMetadata(input_tokens=answer.prompt_tokens, output_tokens=answer.completion_tokens,
                         total_tokens=answer.prompt_tokens + answer.completion_tokens)  # fmt: skip


class ChatRagjet(_Server, BaseChatModel):
    """A grounded chat model: ragjet retrieves, prompts and generates; citations and confidence come back in
    `response_metadata`, token counts in `usage_metadata`."""

    model_config = ConfigDict(populate_by_name=True)

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = Field(120.0, alias="timeout")
    model: str = "ragjet"  # the name LangChain traces; what answers is `collection`'s pipeline
    collection: str | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = Field(None, alias="stop_sequences")
    max_retries: int = 2

    @property
    def _llm_type(self) -> str:
        return "ragjet"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "collection": self.collection, "top_k": self.top_k}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"], params["ls_model_name"] = "ragjet", kwargs.get("model", self.model)
        return params

    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = {"top_k": self.top_k, "max_tokens": self.max_tokens, "temperature": self.temperature,
                   "stop": stop or self.stop}  # fmt: skip
        options |= {k: v for k, v in kwargs.items() if k in ("top_k", "max_tokens", "temperature", "top_p", "seed")}
        return {k: v for k, v in options.items() if v is not None}

    def _result(self, answer: Answer) -> ChatResult:
        message = AIMessage(answer.text, response_metadata=_metadata(answer), usage_metadata=_usage(answer),
                            id=answer.id)  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:  # fmt: skip
        with self._client() as client:
            return self._result(client.ask(_question(messages), self.collection, **self._options(stop, kwargs)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:  # fmt: skip
        async with self._async_client() as client:
            answer = await client.ask(_question(messages), self.collection, **self._options(stop, kwargs))
        return self._result(answer)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        with self._client() as client:
            for event in client.ask_stream(_question(messages), self.collection, **self._options(stop, kwargs)):
                chunk = _chunk(event)
                if chunk is not None:
                    if run_manager and isinstance(event, TextDelta):
                        run_manager.on_llm_new_token(event.text, chunk=chunk)
                    yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:  # fmt: skip
        async with self._async_client() as client:
            async for event in client.ask_stream(_question(messages), self.collection, **self._options(stop, kwargs)):
                chunk = _chunk(event)
                if chunk is not None:
                    if run_manager and isinstance(event, TextDelta):
                        await run_manager.on_llm_new_token(event.text, chunk=chunk)
                    yield chunk


def _chunk(event: object) -> ChatGenerationChunk | None:
    """A text piece, or the closing chunk that carries the answer's metadata and token counts."""
    if isinstance(event, TextDelta):
        return ChatGenerationChunk(message=AIMessageChunk(content=event.text))
    if isinstance(event, StreamDone):
        answer = event.answer
        message = AIMessageChunk(content="", response_metadata=_metadata(answer), usage_metadata=_usage(answer),
                                 chunk_position="last")  # fmt: skip
        return ChatGenerationChunk(message=message)
    return None


class RagjetEmbeddings(_Server, Embeddings):
    """The server's embedder (the one its collections were built with), through /v1/embeddings."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout_s: float = 120.0):
        self.base_url, self.api_key, self.timeout_s = base_url, api_key, timeout_s

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._client() as client:
            return client.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._async_client() as client:
            return await client.embed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
