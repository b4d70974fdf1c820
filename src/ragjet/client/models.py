"""What the typed client returns and raises: ragjet's REST responses as pydantic models, and one exception class
per error kind of the server's contract (serve/contract.py), chosen by the error body's `code`.

The answer and search models are the server's own response schemas (serve/schemas.py), so the two cannot
drift; the rest mirror the JSON the collection and review routes return, tolerant of fields added later.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ragjet.serve.schemas import ChatCompletion, CitationOut, EmbeddingResponse, SearchResponse, SearchResultOut

__all__ = [
    "Answer", "AuthenticationError", "ChatCompletion", "CitationOut", "CollectionBusyError", "CollectionInfo",
    "ConflictError", "DeadlineExceededError", "DocumentInfo", "EmbeddingResponse", "IngestReport",
    "InvalidRequestError", "NotFoundError", "OverloadedError", "PermissionDeniedError", "RagjetConnectionError",
    "RagjetError", "RateLimitedError", "ReviewItem", "SearchResponse", "SearchResultOut", "ServerError", "error_for",
]  # fmt: skip


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class Answer(_Tolerant):
    """A grounded answer: the text, its numbered sources and ragjet's account of how it was made."""

    id: str
    text: str
    finish_reason: str
    citations: list[CitationOut]
    confidence: float | None
    needs_review: bool
    degraded: str | None  # why a fallback answered, or "not found in the documents"
    review_id: str | None
    from_cache: bool
    timings_ms: dict[str, float]
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def of(cls, completion: ChatCompletion) -> Answer:
        info, choice = completion.ragjet, completion.choices[0]
        return cls(id=completion.id, text=choice.message.content, finish_reason=choice.finish_reason,
                   citations=info.citations, confidence=info.confidence, needs_review=info.needs_review,
                   degraded=info.degraded, review_id=info.review_id, from_cache=info.from_cache,
                   timings_ms=info.timings_ms, prompt_tokens=completion.usage.prompt_tokens,
                   completion_tokens=completion.usage.completion_tokens)  # fmt: skip


class CollectionInfo(_Tolerant):
    name: str
    embedder_id: str
    dim: int
    index_kind: str
    num_documents: int
    num_chunks: int
    created_at: float
    updated_at: float


class DocumentInfo(_Tolerant):
    source: str
    title: str
    content_hash: str
    num_chunks: int
    ingested_at: float


class IngestReport(_Tolerant):
    num_added: int
    num_updated: int
    num_unchanged: int
    num_skipped: int
    num_chunks: int
    errors: list[str]
    seconds: float


class ReviewItem(_Tolerant):
    id: str
    collection: str
    question: str
    answer: str
    citations: list[dict[str, object]]
    confidence: float | None
    status: str  # "pending" | "resolved"
    resolution: str | None
    reviewer: str | None
    created_at: float
    resolved_at: float | None


class RagjetError(Exception):
    """An error ragjet's server answered with: `code` is the contract's (collection_not_found, rate_limited, ...)."""

    def __init__(self, message: str, status: int, code: str, retry_after_s: float | None = None):
        super().__init__(f"{message} ({status} {code})")
        self.message, self.status, self.code, self.retry_after_s = message, status, code, retry_after_s


class AuthenticationError(RagjetError):
    """No API key, or a wrong one (401)."""


class PermissionDeniedError(RagjetError):
    """The key may not do this (403)."""


class NotFoundError(RagjetError):
    """No such collection, model or review item (404)."""


class ConflictError(RagjetError):
    """The collection exists already, or its state forbids the request (409)."""


class CollectionBusyError(ConflictError):
    """An ingest is writing the collection; retry after `retry_after_s` (409)."""


class InvalidRequestError(RagjetError):
    """The request itself is wrong: options out of range, too large, an unsupported file (400, 413, 415, 422)."""


class RateLimitedError(RagjetError):
    """This key sends faster than its limit (429); retried by the client while retries last."""


class OverloadedError(RagjetError):
    """The server is at capacity (429/503); retried by the client while retries last."""


class DeadlineExceededError(RagjetError):
    """The request's deadline passed on the server (504)."""


class ServerError(RagjetError):
    """A fault of the server (5xx)."""


class RagjetConnectionError(RagjetError):
    """The server could not be reached (refused, timed out, name not resolved)."""

    def __init__(self, message: str):
        super().__init__(message, 0, "connection_error")


_BY_CODE: dict[str, type[RagjetError]] = {
    "unauthenticated": AuthenticationError, "permission_denied": PermissionDeniedError,
    "model_not_found": NotFoundError, "collection_not_found": NotFoundError, "review_item_not_found": NotFoundError,
    "not_found": NotFoundError, "collection_busy": CollectionBusyError, "collection_conflict": ConflictError,
    "rate_limited": RateLimitedError, "overloaded": OverloadedError, "deadline_exceeded": DeadlineExceededError,
}  # fmt: skip


def error_for(status: int, body: object, retry_after: str | None) -> RagjetError:
    """The typed error for a non-2xx response (its OpenAI-style error body, when it has one)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or f"HTTP {status}")
    code = str(error.get("code") or ("server_error" if status >= 500 else "invalid_request"))
    cls = _BY_CODE.get(code) or (ServerError if status >= 500 else OverloadedError if status == 503
                                 else InvalidRequestError)  # fmt: skip
    try:
        retry = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry = None
    return cls(message, status, code, retry)
