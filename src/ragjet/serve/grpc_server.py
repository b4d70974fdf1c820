"""gRPC transport: thin methods that validate, make one pipeline call and convert the result."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import asdict

import grpc

from ragjet import __version__
from ragjet.config import Settings
from ragjet.llm.engine.errors import EngineOverloadedError
from ragjet.rag.deadline import DeadlineExceededError
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.types import Answer, AnswerDelta, AnswerDone, AnswerStart, AskOptions, Citation
from ragjet.serve.auth import AuthError, Gatekeeper, allowed_path, bearer_key
from ragjet.serve.limits import RateLimitedError
from ragjet.serve.proto import ragjet_pb2 as pb
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc
from ragjet.store import CollectionNotFoundError


def _citation(c: Citation) -> pb.Citation:
    return pb.Citation(
        number=c.number,
        chunk_id=c.chunk_id,
        source=c.source,
        title=c.title,
        heading=c.heading,
        page=c.page or 0,
        score=c.score,
        text=c.text,
    )


def _done(a: Answer) -> pb.AnswerDone:
    return pb.AnswerDone(
        request_id=a.request_id,
        text=a.text,
        citations=[_citation(c) for c in a.citations],
        timings_ms=a.timings.as_dict(),
        prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens,
        finish_reason=a.finish_reason,
        confidence=a.confidence or 0.0,
        needs_review=a.needs_review,
        degraded=a.degraded or "",
    )


async def _abort_for(exc: Exception, context: grpc.aio.ServicerContext) -> None:
    """Map pipeline errors to gRPC status codes (the REST API maps the same errors to HTTP statuses)."""
    if isinstance(exc, AuthError):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, RateLimitedError | EngineOverloadedError):
        # The REST API's Retry-After, as trailing metadata: whole seconds, at least 1.
        retry_after = max(1, math.ceil(getattr(exc, "retry_after_s", 1.0)))
        context.set_trailing_metadata((("retry-after", str(retry_after)),))
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, PermissionError):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    if isinstance(exc, CollectionNotFoundError):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, DeadlineExceededError):
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, ValueError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    raise exc


SERVICE_ERRORS = (
    AuthError,
    RateLimitedError,
    PermissionError,
    CollectionNotFoundError,
    EngineOverloadedError,
    DeadlineExceededError,
    ValueError,
)


class RagJetService(pb_grpc.RagJetServicer):
    def __init__(self, pipeline: RagPipeline, settings: Settings, gatekeeper: Gatekeeper):
        self.pipeline, self.settings, self.gate = pipeline, settings, gatekeeper
        self.default_collection = settings.serve.default_collection

    def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        key = bearer_key(metadata.get("authorization"), metadata.get("x-api-key"))
        return self.gate.tenant_for(key, context.peer())

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AskEvent]:  # noqa: N802
        arrived_at = time.monotonic()
        if not request.question.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "question must not be empty")
        try:
            tenant = self._tenant(context)
        except SERVICE_ERRORS as exc:
            await _abort_for(exc, context)
            raise
        options = AskOptions(
            collection=request.collection or self.default_collection,
            top_k=request.top_k or None,
            filters=dict(request.filters) or None,
            max_tokens=request.max_tokens or 256,
            temperature=request.temperature,
            seed=request.seed if request.HasField("seed") else None,
            deadline_s=request.deadline_s or None,
            tenant=tenant,
            arrived_at=arrived_at,
        )
        try:
            async for event in self.pipeline.ask_stream(request.question, options):
                if isinstance(event, AnswerStart):
                    start = pb.AnswerStart(
                        request_id=event.request_id, citations=[_citation(c) for c in event.citations]
                    )
                    yield pb.AskEvent(start=start)
                elif isinstance(event, AnswerDelta):
                    yield pb.AskEvent(delta=event.text)
                elif isinstance(event, AnswerDone):
                    yield pb.AskEvent(done=_done(event.answer))
        except SERVICE_ERRORS as exc:
            await _abort_for(exc, context)

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:  # noqa: N802
        try:
            hits = await self.pipeline.search(
                request.query,
                request.collection or self.default_collection,
                top_k=request.top_k or None,
                filters=dict(request.filters) or None,
                tenant=self._tenant(context),
            )
        except SERVICE_ERRORS as exc:
            await _abort_for(exc, context)
            raise
        return pb.SearchResponse(
            hits=[
                pb.SearchHit(
                    rank=h.rank,
                    chunk_id=h.chunk_id,
                    score=h.score,
                    source=h.source,
                    title=h.title,
                    heading=h.heading,
                    page=h.page or 0,
                    text=h.text,
                )
                for h in hits
            ]
        )

    async def Ingest(self, request: pb.IngestRequest, context: grpc.aio.ServicerContext) -> pb.IngestResponse:  # noqa: N802
        if not request.collection or not request.paths:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "collection and at least one path are required")
        try:
            tenant = self._tenant(context)
            paths = [allowed_path(p, self.settings.serve.ingest_roots) for p in request.paths]
            report = await self.pipeline.ingest(request.collection, paths, tenant=tenant)
        except SERVICE_ERRORS as exc:
            await _abort_for(exc, context)
            raise
        return pb.IngestResponse(report_json=json.dumps(asdict(report), default=str))

    async def Health(self, request: pb.HealthRequest, context: grpc.aio.ServicerContext) -> pb.HealthResponse:  # noqa: N802
        return pb.HealthResponse(ready=self.pipeline.is_ready, version=__version__)


async def start_grpc_server(pipeline: RagPipeline, settings: Settings, gatekeeper: Gatekeeper) -> grpc.aio.Server:
    """Serve on settings.serve.host:grpc_port in the running event loop (port 0 picks a free one: `bound_port`)."""
    server = grpc.aio.server()
    pb_grpc.add_RagJetServicer_to_server(RagJetService(pipeline, settings, gatekeeper), server)
    bound = server.add_insecure_port(f"{settings.serve.host}:{settings.serve.grpc_port}")
    await server.start()
    server.bound_port = bound  # type: ignore[attr-defined]
    return server
