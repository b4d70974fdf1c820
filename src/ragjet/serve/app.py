"""Builds the FastAPI app: REST + OpenAI-compatible routes + the web UI, all over one RagPipeline."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragjet import __version__
from ragjet.config import Settings
from ragjet.obs.gauges import EngineCollector, GpuCollector
from ragjet.obs.logs import REQUEST_ID_HEADER, new_request_id, reset_request_id, set_request_id
from ragjet.obs.metrics import Metrics
from ragjet.obs.tracing import enable_tracing, record_answer_spans
from ragjet.rag.pipeline import RagPipeline
from ragjet.serve.auth import Gatekeeper, KeyStore
from ragjet.serve.errors import install_error_handlers
from ragjet.serve.limits import ArrivalStamp, BodySizeLimit, RateLimiter
from ragjet.serve.routes import collections, health, openai, review, search, system

STATIC_DIR = Path(__file__).parent / "static"


def freeze_startup_objects() -> None:
    """Move everything alive once the models are loaded out of the garbage collector's sight.

    A full collection walks every tracked object, and a server holding torch, tokenizers and its models has
    hundreds of thousands: measured here, each full pass stopped every thread (the event loop included) for
    ~250 ms in the middle of serving. Those objects live as long as the server, so the collector gains nothing
    by walking them again; requests' garbage is still collected as usual.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, pipeline: RagPipeline | None = None, gatekeeper: Gatekeeper | None = None
) -> FastAPI:
    """The app owns the pipeline's lifetime: models load at startup, engines stop at shutdown."""
    pipeline = pipeline or RagPipeline(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pipeline.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            for hook in app.state.before_close:  # e.g. drain gRPC, which shares the pipeline, before closing it
                await hook()
            await pipeline.close()
            gc.unfreeze()  # the models are released: let the collector see what is left

    app = FastAPI(title="ragjet", version=__version__, lifespan=lifespan)
    app.state.pipeline, app.state.settings, app.state.metrics = pipeline, settings, Metrics()
    app.state.gatekeeper = gatekeeper or make_gatekeeper(settings)
    app.state.before_close = []  # async callables run at shutdown, after HTTP drained, before the pipeline closes
    pipeline.observers.append(lambda answer, _: app.state.metrics.observe_answer(answer))
    if settings.serve.tracing:
        enable_tracing()
        pipeline.observers.append(lambda answer, options: record_answer_spans(answer, options.collection))
    app.state.metrics.registry.register(EngineCollector(pipeline.engine_stats))
    app.state.metrics.registry.register(GpuCollector())
    install_error_handlers(app)
    for module in (openai, search, collections, review, system, health):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def request_context(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Tag the request with an id (logs, answers, X-Request-ID) and count it once it is answered."""
        request_id = new_request_id(request.headers.get(REQUEST_ID_HEADER))
        token = set_request_id(request_id)
        try:
            response = await call_next(request)
        finally:
            reset_request_id(token)
        response.headers[REQUEST_ID_HEADER] = request_id
        route = request.scope.get("route")
        app.state.metrics.observe_response(getattr(route, "path", "unmatched"), response.status_code)
        return response

    app.add_middleware(
        BodySizeLimit, max_bytes=settings.serve.max_request_bytes, max_upload_bytes=settings.serve.max_upload_bytes
    )
    app.add_middleware(ArrivalStamp)  # added last, so it runs first
    return app


def make_gatekeeper(settings: Settings) -> Gatekeeper:
    """API keys from the data dir's keys.db, rate limits from the settings; shared by REST and gRPC."""
    serve = settings.serve
    keys = KeyStore(settings.data_dir.expanduser() / "keys.db")
    return Gatekeeper(keys, RateLimiter(serve.rate_limit_per_s, serve.rate_limit_burst), serve.auth_enabled)
