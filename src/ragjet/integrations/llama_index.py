"""ragjet in LlamaIndex (`pip install ragjet[llama-index]`): a retriever, an LLM and an embedding model, each a thin
adapter over the typed client (ragjet.client), so they speak to a running ragjet server.

    from ragjet.integrations.llama_index import RagjetEmbedding, RagjetLLM, RagjetNodeRetriever
    retriever = RagjetNodeRetriever(base_url="http://127.0.0.1:8000", collection="python-docs", k=4)
    llm = RagjetLLM(base_url="http://127.0.0.1:8000", collection="python-docs")
    response = llm.complete("What does yield do?")
    response.additional_kwargs["citations"], response.additional_kwargs["confidence"]

The LLM answers a question from its collection with ragjet's own retrieval and citations; in a chat it answers
the last user message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import Field

from ragjet.client import AsyncClient, Client, StreamDone, TextDelta
from ragjet.client.models import Answer, SearchResultOut

DEFAULT_URL = "http://127.0.0.1:8000"


def _node(hit: SearchResultOut) -> NodeWithScore:
    node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=hit.model_dump(exclude={"text", "chunk_id"}))
    return NodeWithScore(node=node, score=hit.score)


class RagjetNodeRetriever(BaseRetriever):
    """ragjet's two-stage search over one collection as LlamaIndex nodes (metadata: source, title, heading, page,
    the fused, dense and BM25 scores, rank)."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, collection: str | None = None,
                 k: int = 4, filters: dict[str, Any] | None = None, timeout_s: float = 120.0):  # fmt: skip
        super().__init__()
        self.base_url, self.api_key, self.collection, self.k = base_url, api_key, collection, k
        self.filters, self.timeout_s = filters, timeout_s

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with Client(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            found = client.search(query_bundle.query_str, self.collection, self.k, self.filters)
        return [_node(hit) for hit in found.results]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncClient(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            found = await client.search(query_bundle.query_str, self.collection, self.k, self.filters)
        return [_node(hit) for hit in found.results]


def last_user_message(messages: Sequence[ChatMessage]) -> str:
    """What ragjet answers in a chat: the last user message (its retrieval supplies the context)."""
    for message in reversed(messages):
        if message.role == MessageRole.USER and (message.content or "").strip():
            return str(message.content)
    raise ValueError("ragjet answers a user message: the chat has none")


def _extras(answer: Answer) -> dict[str, Any]:
    return {"citations": [c.model_dump() for c in answer.citations], "confidence": answer.confidence,
            "needs_review": answer.needs_review, "degraded": answer.degraded, "from_cache": answer.from_cache,
            "timings_ms": answer.timings_ms, "finish_reason": answer.finish_reason,
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}  # fmt: skip


class RagjetLLM(CustomLLM):
    """A grounded LLM: citations, confidence and review state come back in `additional_kwargs`."""

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    collection: str | None = None
    max_tokens: int = Field(256, ge=1)
    temperature: float = 0.0
    top_k: int | None = None
    timeout_s: float = 120.0

    def __init__(self, **data: Any):
        data.setdefault("messages_to_prompt", last_user_message)
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        return "ragjet"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.collection or "ragjet", num_output=self.max_tokens, is_chat_model=False)

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_k": self.top_k}
        options |= {k: v for k, v in kwargs.items() if k in ("max_tokens", "temperature", "top_k", "top_p", "seed")}
        return {k: v for k, v in options.items() if v is not None}

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with Client(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            answer = client.ask(prompt, self.collection, **self._options(kwargs))
        return CompletionResponse(text=answer.text, additional_kwargs=_extras(answer))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        async with AsyncClient(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            answer = await client.ask(prompt, self.collection, **self._options(kwargs))
        return CompletionResponse(text=answer.text, additional_kwargs=_extras(answer))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        options = self._options(kwargs)

        def pieces() -> CompletionResponseGen:
            text = ""
            with Client(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
                for event in client.ask_stream(prompt, self.collection, **options):
                    if isinstance(event, TextDelta):
                        text += event.text
                        yield CompletionResponse(text=text, delta=event.text)
                    elif isinstance(event, StreamDone):
                        yield CompletionResponse(text=text, delta="", additional_kwargs=_extras(event.answer))

        return pieces()


class RagjetEmbedding(BaseEmbedding):
    """The server's embedder (the one its collections were built with), through /v1/embeddings."""

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = 120.0

    @classmethod
    def class_name(cls) -> str:
        return "ragjet"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        with Client(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            return client.embed(texts)

    async def _aembed(self, texts: list[str]) -> list[list[float]]:
        async with AsyncClient(self.base_url, api_key=self.api_key, timeout_s=self.timeout_s) as client:
            return await client.embed(texts)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts) if texts else []

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._aembed([query]))[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aembed([text]))[0]
