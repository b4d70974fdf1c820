"""Request body size limit as a pure ASGI middleware, so oversized bodies are refused while streaming in."""

from __future__ import annotations

import json
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class ArrivalStamp:
    """Records when a request reached the app (`request.state.arrived_at`, time.monotonic()), before any
    middleware or dependency could queue it, so that its deadline counts that queueing too."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["arrived_at"] = time.monotonic()
        await self.app(scope, receive, send)


class BodySizeLimit:
    """413 for bodies over `max_bytes` (uploads get `max_upload_bytes`), checked on Content-Length and bytes read."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int):
        self.app, self.max_bytes, self.max_upload_bytes = app, max_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = scope["path"].endswith("/documents") and scope["method"] == "POST"
        limit = self.max_upload_bytes if is_upload else self.max_bytes
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": f"request body exceeds {limit} bytes",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RateLimitedError(Exception):
    """Too many requests from one key or client; retry after `retry_after_s`."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"rate limit exceeded; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at `rate_per_s`.

    Buckets live in memory (per process); idle ones are dropped so a scan of random keys cannot grow it.
    """

    MAX_BUCKETS = 10_000

    def __init__(self, rate_per_s: float, burst: int):
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill time)
        self._lock = threading.Lock()

    def check(self, caller: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens < 1:
                self._buckets[caller] = (tokens, now)
                raise RateLimitedError((1 - tokens) / self.rate_per_s)
            if len(self._buckets) >= self.MAX_BUCKETS and caller not in self._buckets:
                self._drop_full_buckets(now)
            self._buckets[caller] = (tokens - 1, now)

    def _drop_full_buckets(self, now: float) -> None:
        full_after_s = self.burst / self.rate_per_s
        self._buckets = {c: (t, last) for c, (t, last) in self._buckets.items() if now - last < full_after_s}
