"""JSON log lines carry the request id that the client also receives."""

from __future__ import annotations

import json
import logging

from ragjet.obs.logs import JsonFormatter, new_request_id, reset_request_id, set_request_id


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("ragjet.test", logging.WARNING, __file__, 1, message, None, None)


def test_log_line_is_json_with_the_current_request_id() -> None:
    token = set_request_id("abc123")
    try:
        line = json.loads(JsonFormatter().format(record("slow answer")))
    finally:
        reset_request_id(token)
    assert line["request_id"] == "abc123" and line["msg"] == "slow answer" and line["level"] == "warning"
    assert "request_id" not in json.loads(JsonFormatter().format(record("idle")))


def test_client_request_ids_are_kept_only_when_safe() -> None:
    assert new_request_id("trace-42.a_b") == "trace-42.a_b"
    for unsafe in ("has space", "x" * 65, "new\nline", "", None):
        minted = new_request_id(unsafe)
        assert minted != unsafe and len(minted) == 16
