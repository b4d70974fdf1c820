"""gRPC transport: thin methods that translate the wire format into the contract's requests (rag/requests.py),
make one pipeline call and convert the result; errors leave through the contract's taxonomy (serve/contract.py),
so a request gets the same outcome here as over REST."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict

import grpc

from ragjet import __version__
from ragjet.config import Settings
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.requests import AskParams, SearchParams
from ragjet.rag.types import Answer, AnswerDelta, AnswerDone, AnswerStart, Citation
from ragjet.serve.auth import Gatekeeper, allowed_path, bearer_key
from ragjet.serve.contract import CLIENT_ERRORS, classify
from ragjet.serve.proto import ragjet_pb2 as pb
from ragjet.serve.proto import ragjet_pb2_grpc as pb_grpc


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
        from_cache=a.from_cache,
    )


async def _abort_for(exc: Exception, context: grpc.aio.ServicerContext) -> None:
    """Abort with the contract's status for a client error (its code and any retry-after as trailing metadata,
    as the REST API sends them in its body and headers); re-raise anything else, a server fault."""
    error = classify(exc)
    if error is None:
        raise exc
    metadata = [("ragjet-error-code", error.kind.code)]
    if error.retry_after_s is not None:
        metadata.append(("retry-after", str(error.retry_after_s)))
    context.set_trailing_metadata(tuple(metadata))
    await context.abort(getattr(grpc.StatusCode, error.kind.grpc_status), error.message)


def ask_params(request: pb.AskRequest) -> AskParams:
    """The transport-neutral request; proto3 sends unset scalars as 0 or empty, which mean "the default"."""
    return AskParams(
        question=request.question,
        collection=request.collection or None,
        top_k=request.top_k or None,
        filters=dict(request.filters) or None,
        temperature=request.temperature,
        seed=request.seed if request.HasField("seed") else None,
        stop=tuple(request.stop),
        deadline_s=request.deadline_s or None,
        cache=not request.no_cache,
        **({"max_tokens": request.max_tokens} if request.max_tokens else {}),
        **({"top_p": request.top_p} if request.HasField("top_p") else {}),
    )


def search_params(request: pb.SearchRequest) -> SearchParams:
    return SearchParams(
        query=request.query,
        collection=request.collection or None,
        top_k=request.top_k or None,
        filters=dict(request.filters) or None,
    )


class RagJetService(pb_grpc.RagJetServicer):
    def __init__(self, pipeline: RagPipeline, settings: Settings, gatekeeper: Gatekeeper):
        self.pipeline, self.settings, self.gate = pipeline, settings, gatekeeper
        self.default_collection = settings.serve.default_collection

    async def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's tenant; the key lookup reads the key store, so it runs off the event loop."""
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        key = bearer_key(metadata.get("authorization"), metadata.get("x-api-key"))
        return await asyncio.to_thread(self.gate.tenant_for, key, context.peer())

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AskEvent]:  # noqa: N802
        arrived_at = time.monotonic()
        try:
            tenant = await self._tenant(context)
            params = ask_params(request)
            options = params.options(self.default_collection, tenant, arrived_at)
            async for event in self.pipeline.ask_stream(params.question, options):
                if isinstance(event, AnswerStart):
                    start = pb.AnswerStart(
                        request_id=event.request_id, citations=[_citation(c) for c in event.citations]
                    )
                    yield pb.AskEvent(start=start)
                elif isinstance(event, AnswerDelta):
                    yield pb.AskEvent(delta=event.text)
                elif isinstance(event, AnswerDone):
                    yield pb.AskEvent(done=_done(event.answer))
        except CLIENT_ERRORS as exc:
            await _abort_for(exc, context)

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:  # noqa: N802
        try:
            tenant = await self._tenant(context)
            params = search_params(request)
            collection = params.collection or self.default_collection
            hits = await self.pipeline.search(
                params.query, collection, top_k=params.top_k, filters=params.filters, tenant=tenant
            )
        except CLIENT_ERRORS as exc:
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
        try:
            tenant = await self._tenant(context)
            if not request.collection or not request.paths:
                raise ValueError("collection and at least one path are required")
            paths = [allowed_path(p, self.settings.serve.ingest_roots) for p in request.paths]
            report = await self.pipeline.ingest(request.collection, paths, tenant=tenant)
        except CLIENT_ERRORS as exc:
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
