"""Prometheus metrics: one histogram family for every pipeline stage, counters for outcomes.

The pipeline's `StageTimings` are the only clock: answers are recorded here after the fact, so no
stage is timed twice. Each app gets its own registry so tests (and several apps in one process)
never share counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from ragjet.obs.answer import ObservedAnswer

# 1 ms … ~60 s, roughly ×2 per bucket: covers a cached search and a long CPU generation alike.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ERROR_KINDS = {413: "too_large", 429: "overloaded", 503: "unavailable", 504: "timeout"}
STAGES = ("embed", "search", "rerank", "prompt", "queue", "prefill", "decode", "total")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.stage_seconds = Histogram(
            "ragjet_stage_seconds",
            "Time spent per pipeline stage of an answered request",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decode_token_seconds = Histogram(
            "ragjet_decode_token_seconds",
            "Decode time per generated token",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self.requests = Counter(
            "ragjet_http_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.answers = Counter("ragjet_answers", "Answers by finish reason", ["finish_reason"], registry=self.registry)
        self.fallbacks = Counter("ragjet_fallbacks", "Degraded answers by reason", ["reason"], registry=self.registry)
        self.review_flags = Counter("ragjet_review_flags", "Answers flagged for human review", registry=self.registry)
        self.tokens = Counter("ragjet_tokens", "Tokens processed", ["kind"], registry=self.registry)
        self.errors = Counter("ragjet_errors", "Failed requests by kind", ["kind"], registry=self.registry)
        self.cache_hits = Counter("ragjet_answer_cache_hits", "Answers served from the answer cache",
                                  registry=self.registry)  # fmt: skip

    def observe_response(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(ERROR_KINDS.get(status, "server_error" if status >= 500 else "client_error")).inc()

    def observe_answer(self, answer: ObservedAnswer) -> None:
        t = answer.timings
        self.answers.labels(answer.finish_reason).inc()
        if answer.from_cache:  # no retrieval, no generation: only its total joins the stage histograms
            self.cache_hits.inc()
            self.stage_seconds.labels("total").observe(t.total_ms / 1e3)
            return
        for stage in STAGES:
            self.stage_seconds.labels(stage).observe(getattr(t, f"{stage}_ms") / 1e3)
        if answer.completion_tokens > 1:
            self.decode_token_seconds.observe(t.decode_ms / 1e3 / (answer.completion_tokens - 1))
        if answer.degraded:
            self.fallbacks.labels(answer.degraded.split(":", 1)[0]).inc()
        if answer.needs_review:
            self.review_flags.inc()
        self.tokens.labels("prompt").inc(answer.prompt_tokens)
        self.tokens.labels("prompt_cached").inc(answer.cached_prompt_tokens)
        self.tokens.labels("completion").inc(answer.completion_tokens)
