"""Every failure a client can cause becomes an OpenAI-style error body with the right status."""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragjet.llm.engine.errors import EngineOverloadedError, PromptTooLongError
from ragjet.rag.deadline import DeadlineExceededError
from ragjet.serve.limits import RateLimitedError
from ragjet.store import CollectionError, CollectionNotFoundError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            return f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}"
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc), "invalid_request_error")

    @app.exception_handler(json.JSONDecodeError)
    async def _bad_json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(400, f"malformed JSON body: {exc}", "invalid_request_error")

    @app.exception_handler(CollectionNotFoundError)
    async def _no_collection(_: Request, exc: CollectionNotFoundError) -> JSONResponse:
        return error_response(404, str(exc), "not_found_error")

    @app.exception_handler(EngineOverloadedError)
    async def _overloaded(_: Request, exc: EngineOverloadedError) -> JSONResponse:
        retry_after = math.ceil(getattr(exc, "retry_after_s", RETRY_AFTER_S))
        return error_response(429, str(exc), "overloaded_error", {"Retry-After": str(retry_after)})

    @app.exception_handler(RateLimitedError)
    async def _rate_limited(_: Request, exc: RateLimitedError) -> JSONResponse:
        retry = str(max(1, math.ceil(exc.retry_after_s)))
        return error_response(429, str(exc), "rate_limit_error", {"Retry-After": retry})

    @app.exception_handler(PromptTooLongError)
    async def _too_long(_: Request, exc: PromptTooLongError) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error")

    @app.exception_handler(DeadlineExceededError)
    async def _deadline(_: Request, exc: DeadlineExceededError) -> JSONResponse:
        return error_response(504, str(exc), "timeout_error")

    @app.exception_handler(CollectionError)
    async def _collection(_: Request, exc: CollectionError) -> JSONResponse:
        return error_response(409, str(exc), "conflict_error")

    @app.exception_handler(ValueError)
    async def _bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")
