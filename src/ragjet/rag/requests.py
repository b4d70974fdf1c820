"""What a client may ask for, whatever the transport: one validated model per call, so REST, gRPC and the
CLI accept the same options within the same bounds and turn them into the pipeline's options one way.

Each transport only translates its own wire format into these (an unset proto field becomes None, an
OpenAI request's `max_completion_tokens` becomes `max_tokens`); the validation, the defaults and the
mapping onto `AskOptions` live here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragjet.rag.tenants import DEFAULT_TENANT
from ragjet.rag.types import DEFAULT_MAX_TOKENS, AskOptions

TopK = Annotated[int, Field(ge=1, le=50, description="chunks put into the prompt")]
SearchTopK = Annotated[int, Field(ge=1, le=100, description="hits returned")]
MaxTokens = Annotated[int, Field(ge=1, le=8192)]
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
DeadlineS = Annotated[float, Field(gt=0, le=3600, description="whole-request budget in seconds")]
MAX_QUESTION_CHARS = 8192


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AskParams(_Request):
    question: str = Field(max_length=MAX_QUESTION_CHARS)
    collection: str | None = None  # None: the server's default collection
    top_k: TopK | None = None  # None: settings.retrieve.top_k
    filters: dict[str, Any] | None = None
    max_tokens: MaxTokens = DEFAULT_MAX_TOKENS
    temperature: Temperature = 0.0
    top_p: TopP = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = Field((), max_length=4)
    deadline_s: DeadlineS | None = None
    cache: bool = Field(True, description="a repeated question may be answered from the answer cache")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("question must not be empty")
        return question

    def options(
        self, default_collection: str, tenant: str = DEFAULT_TENANT, arrived_at: float | None = None
    ) -> AskOptions:
        return AskOptions(
            collection=self.collection or default_collection,
            top_k=self.top_k,
            filters=self.filters or None,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=self.stop,
            deadline_s=self.deadline_s,
            tenant=tenant,
            arrived_at=arrived_at,
            use_cache=self.cache,
        )


class SearchParams(_Request):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    collection: str | None = None
    top_k: SearchTopK | None = None  # None: settings.retrieve.top_k
    filters: dict[str, Any] | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query must not be empty")
        return query
