"""Admission control: take a request only if it can finish within its deadline; refuse it now otherwise.

Queueing everything makes every request late once load exceeds capacity. Instead the controller
keeps a sliding window of recent completions (the service rate it actually achieves) and estimates
how long a new request would wait behind the ones in flight. If that wait would eat most of the
request's deadline, the request is refused at once (429 with a Retry-After), so the accepted ones
still finish in time. A hard cap on requests in flight bounds memory whatever the estimate says.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from ragjet.llm.engine.errors import EngineOverloadedError

WINDOW = 32  # completions the service-rate estimate looks back over
WAIT_SHARE = 0.7  # refuse when the expected wait exceeds this share of the deadline


class OverloadedError(EngineOverloadedError):
    """Refused at admission; `retry_after_s` says when capacity is likely free again."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AdmissionController:
    def __init__(self, max_in_flight: int, min_in_flight: int):
        """`min_in_flight` requests are always admitted (the engine batches them together anyway)."""
        self.max_in_flight, self.min_in_flight = max_in_flight, min(min_in_flight, max_in_flight)
        self.in_flight = 0
        self._done_at: deque[float] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def service_rate(self) -> float | None:
        """Completions per second over the recent window; None until there is history."""
        if len(self._done_at) < 4:
            return None
        span = self._done_at[-1] - self._done_at[0]
        return (len(self._done_at) - 1) / span if span > 0 else None

    def expected_wait_s(self) -> float:
        rate = self.service_rate()
        return 0.0 if rate is None else self.in_flight / rate

    @contextmanager
    def admit(self, deadline_s: float) -> Iterator[None]:
        """Hold a slot for one request; raises OverloadedError when it could not meet `deadline_s`."""
        with self._lock:
            self._check(deadline_s)
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
                self._done_at.append(time.monotonic())

    def _check(self, deadline_s: float) -> None:
        if self.in_flight >= self.max_in_flight:
            raise OverloadedError(f"ragjet is at capacity ({self.max_in_flight} requests in flight)", 1.0)
        if self.in_flight < self.min_in_flight:
            return
        wait = self.expected_wait_s()
        if wait > WAIT_SHARE * deadline_s:
            retry = max(1.0, math.ceil(wait - WAIT_SHARE * deadline_s))
            raise OverloadedError(
                f"ragjet is overloaded: about {wait:.1f} s of queued work exceeds this request's "
                f"{deadline_s:g} s deadline; retry in {retry:g} s",
                retry,
            )
