"""Every failure a client can cause becomes an OpenAI-style error body with the right status."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragjet.serve.contract import CLIENT_ERRORS, INVALID_REQUEST, ApiError, classify

log = logging.getLogger(__name__)

# Codes for the errors the HTTP layer itself raises (routing, auth headers, upload checks).
HTTP_CODES = {401: "unauthenticated", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
              415: "unsupported_media_type"}  # fmt: skip


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = HTTP_CODES.get(status, "invalid_request" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def api_error_response(error: ApiError) -> JSONResponse:
    """The contract's error as an OpenAI-style body; `code` is the error kind's stable code."""
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return JSONResponse(error.body(), status_code=error.kind.http_status, headers=headers)


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
        return api_error_response(ApiError(INVALID_REQUEST, _validation_message(exc)))

    @app.exception_handler(json.JSONDecodeError)
    async def _bad_json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return api_error_response(ApiError(INVALID_REQUEST, f"malformed JSON body: {exc}"))

    async def _client_error(_: Request, exc: Exception) -> JSONResponse:
        error = classify(exc)
        assert error is not None  # registered only for the contract's classes
        return api_error_response(error)

    for cls in CLIENT_ERRORS:
        app.add_exception_handler(cls, _client_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")
