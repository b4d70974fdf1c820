"""One error contract for every transport: each failure a client can cause has one kind, with a stable
code, an HTTP status and a gRPC status, so REST, gRPC and the CLI report the same thing the same way.

The REST API sends an OpenAI-style error body (`code` is the kind's code); gRPC aborts with the kind's
status and puts the code in the `ragjet-error-code` trailing metadata; both send `retry-after` when
the client should come back later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import ValidationError

from ragjet.llm.engine.errors import EngineOverloadedError
from ragjet.rag.deadline import DeadlineExceededError
from ragjet.rag.review import ReviewItemNotFoundError
from ragjet.serve.auth import AuthError
from ragjet.serve.limits import RateLimitedError
from ragjet.store import CollectionBusyError, CollectionError, CollectionNotFoundError


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str  # stable and machine-readable: what a client branches on
    type: str  # the OpenAI error body's `type`
    http_status: int
    grpc_status: str  # a grpc.StatusCode name (this module stays free of grpc)


UNAUTHENTICATED = ErrorKind("unauthenticated", "authentication_error", 401, "UNAUTHENTICATED")
RATE_LIMITED = ErrorKind("rate_limited", "rate_limit_error", 429, "RESOURCE_EXHAUSTED")
OVERLOADED = ErrorKind("overloaded", "overloaded_error", 429, "RESOURCE_EXHAUSTED")
PERMISSION_DENIED = ErrorKind("permission_denied", "permission_error", 403, "PERMISSION_DENIED")
MODEL_NOT_FOUND = ErrorKind("model_not_found", "invalid_request_error", 404, "NOT_FOUND")
COLLECTION_NOT_FOUND = ErrorKind("collection_not_found", "not_found_error", 404, "NOT_FOUND")
REVIEW_ITEM_NOT_FOUND = ErrorKind("review_item_not_found", "not_found_error", 404, "NOT_FOUND")
COLLECTION_BUSY = ErrorKind("collection_busy", "conflict_error", 409, "ABORTED")
COLLECTION_CONFLICT = ErrorKind("collection_conflict", "conflict_error", 409, "FAILED_PRECONDITION")
DEADLINE_EXCEEDED = ErrorKind("deadline_exceeded", "timeout_error", 504, "DEADLINE_EXCEEDED")
INVALID_REQUEST = ErrorKind("invalid_request", "invalid_request_error", 400, "INVALID_ARGUMENT")


class UnknownModelError(LookupError):
    """An OpenAI `model` that is neither `ragjet`, a configured alias, nor a collection of the caller's."""

    def __init__(self, model: str, available: list[str]):
        super().__init__(f"the model {model!r} does not exist; available models: {', '.join(available)}")
        self.model, self.available = model, available


# Most specific first: the first class an error is an instance of decides its kind.
TAXONOMY: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (AuthError, UNAUTHENTICATED),
    (RateLimitedError, RATE_LIMITED),
    (EngineOverloadedError, OVERLOADED),
    (PermissionError, PERMISSION_DENIED),
    (UnknownModelError, MODEL_NOT_FOUND),
    (CollectionNotFoundError, COLLECTION_NOT_FOUND),
    (ReviewItemNotFoundError, REVIEW_ITEM_NOT_FOUND),
    (CollectionBusyError, COLLECTION_BUSY),
    (CollectionError, COLLECTION_CONFLICT),
    (DeadlineExceededError, DEADLINE_EXCEEDED),
    (ValueError, INVALID_REQUEST),  # bad options, too long a prompt, a request model's validation
)
CLIENT_ERRORS = tuple(cls for cls, _ in TAXONOMY)


@dataclass(frozen=True, slots=True)
class ApiError:
    kind: ErrorKind
    message: str
    retry_after_s: int | None = None  # whole seconds, at least 1, for errors worth retrying

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.kind.type, "param": None, "code": self.kind.code}}


def classify(exc: BaseException) -> ApiError | None:
    """The client-facing error for `exc`, or None for a server fault (a bug, not the caller's doing)."""
    kind = next((kind for cls, kind in TAXONOMY if isinstance(exc, cls)), None)
    if kind is None:
        return None
    retry = getattr(exc, "retry_after_s", None)
    if retry is None and kind in (RATE_LIMITED, OVERLOADED, COLLECTION_BUSY):
        retry = 1.0
    return ApiError(kind, _message(exc), None if retry is None else max(1, math.ceil(retry)))


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
        return "invalid request: " + "; ".join(parts)
    return str(exc)
