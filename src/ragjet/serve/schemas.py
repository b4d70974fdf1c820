"""HTTP request/response models: OpenAI-compatible where a route mirrors OpenAI, ragjet's own elsewhere."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragjet.rag.requests import AskParams, DeadlineS, MaxTokens, Temperature, TopK, TopP
from ragjet.rag.types import Answer, Citation


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """Plain text of a message; OpenAI's content-part lists keep only their text parts."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class RagOptions(Strict):
    """ragjet's extension of the OpenAI request, sent as `ragjet: {...}` (extra_body in the openai client)."""

    collection: str | None = None
    top_k: TopK | None = None
    filters: dict[str, Any] | None = None
    deadline_s: DeadlineS | None = None
    cache: bool = True  # false: never answer from the answer cache


class ChatCompletionRequest(BaseModel):
    # OpenAI clients send many optional fields; unknown ones are accepted and ignored like OpenAI does.
    model: str = "ragjet"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature = 0.0
    top_p: TopP = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")
    ragjet: RagOptions = RagOptions()

    @field_validator("messages")
    @classmethod
    def _has_user_message(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in messages):
            raise ValueError("messages must contain a non-empty user message (the question)")
        return messages

    def question(self) -> str:
        return next(m.text() for m in reversed(self.messages) if m.role == "user" and m.text().strip())

    def ask_params(self, collection: str) -> AskParams:
        """The transport-neutral request: the last user message, asked of `collection`."""
        stop = () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        max_tokens = self.max_completion_tokens or self.max_tokens
        return AskParams(
            question=self.question(),
            collection=collection,
            top_k=self.ragjet.top_k,
            filters=self.ragjet.filters,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
            deadline_s=self.ragjet.deadline_s,
            cache=self.ragjet.cache,
            **({"max_tokens": max_tokens} if max_tokens else {}),
        )


class CitationOut(BaseModel):
    number: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    score: float
    text: str

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(
            number=c.number,
            chunk_id=c.chunk_id,
            source=c.source,
            title=c.title,
            heading=c.heading,
            page=c.page,
            score=c.score,
            text=c.text,
        )


class RagAnswerInfo(BaseModel):
    request_id: str
    citations: list[CitationOut]
    timings_ms: dict[str, float]
    confidence: float | None
    needs_review: bool
    degraded: str | None
    review_id: str | None
    from_cache: bool = False  # served from the answer cache: no retrieval, no generation

    @classmethod
    def of(cls, a: Answer) -> RagAnswerInfo:
        return cls(
            request_id=a.request_id,
            citations=[CitationOut.of(c) for c in a.citations],
            timings_ms=a.timings.as_dict(),
            confidence=a.confidence,
            needs_review=a.needs_review,
            degraded=a.degraded,
            review_id=a.review_id,
            from_cache=a.from_cache,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    ragjet: RagAnswerInfo


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str = "ragjet"
    encoding_format: Literal["float", "base64"] = "float"  # the openai client asks for base64 by default

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not 1 <= len(value) <= 2048:
            raise ValueError("input must hold between 1 and 2048 strings")
        return value


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string of little-endian float32 when encoding_format="base64"


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class SearchResultOut(BaseModel):
    rank: int
    chunk_id: str
    score: float
    dense_score: float | None
    bm25_score: float | None
    source: str
    title: str
    heading: str
    page: int | None
    text: str


class SearchResponse(BaseModel):
    collection: str
    results: list[SearchResultOut]
    took_ms: float


class CollectionCreate(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
