"""Structured logs: one JSON object per line, each carrying the id of the request it belongs to.

The id arrives in (or is minted for) every HTTP request, is stored in a context variable so any code on
the request's path logs it without passing it around, and goes back to the client as `X-Request-ID`
and in answer bodies, so a user's report can be matched to the server's log lines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ragjet_request_id", default=None)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(client_value: str | None = None) -> str:
    """The client's id when it is a safe token (so it can be logged verbatim), else a fresh one."""
    if client_value and _CLIENT_ID.match(client_value):
        return client_value
    return uuid.uuid4().hex[:16]


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", json_lines: bool = True) -> None:
    """Route ragjet's and uvicorn's loggers through one handler (JSON lines or plain text) on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
