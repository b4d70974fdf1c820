"""`ragjet serve`: REST + OpenAI-compatible API + web UI (uvicorn) and gRPC, one process, one pipeline."""

from __future__ import annotations

import asyncio

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape

from ragjet.cli import app
from ragjet.config import ConfigError, Settings, load_settings
from ragjet.obs.logs import configure_logging

console = Console(stderr=True)
HTTP_GRACE_S = 30  # in-flight HTTP requests may finish for this long after SIGTERM
GRPC_GRACE_S = 10  # then in-flight gRPC calls


async def serve_forever(settings: Settings) -> None:
    """Both transports share the event loop and the pipeline; SIGINT/SIGTERM drain uvicorn, then gRPC."""
    from ragjet.rag.pipeline import RagPipeline
    from ragjet.serve.app import create_app, make_gatekeeper
    from ragjet.serve.grpc_server import start_grpc_server

    configure_logging(settings.serve.log_level, settings.serve.log_json)
    pipeline, gatekeeper = RagPipeline(settings), make_gatekeeper(settings)
    app = create_app(settings, pipeline, gatekeeper)
    http = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.serve.host,
            port=settings.serve.port,
            log_level=settings.serve.log_level,
            log_config=None,  # configure_logging owns the handlers: one format for ragjet and uvicorn
            timeout_graceful_shutdown=HTTP_GRACE_S,
        )
    )
    grpc_server = await start_grpc_server(pipeline, settings, gatekeeper)
    # Shutdown order: uvicorn stops accepting and drains HTTP, then gRPC drains (still with a live pipeline),
    # then the pipeline closes. The `finally` covers a uvicorn that failed before its lifespan ran.
    app.state.before_close.append(lambda: grpc_server.stop(grace=GRPC_GRACE_S))
    try:
        await http.serve()
    finally:
        await grpc_server.stop(grace=GRPC_GRACE_S)


def startup_settings() -> Settings:
    """The settings and the host's compute policy, read (and the policy logged) before anything starts: a bad
    config, or a RAGJET_CPU_ISA this CPU cannot run, is one red line and exit 2 instead of a traceback from the
    server's start-up."""
    from ragjet.hardware import CapabilityError, cpu_policy

    try:
        settings = load_settings()
        cpu_policy()
    except (ConfigError, CapabilityError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    return settings


def print_banner(settings: Settings) -> None:
    url = f"http://{settings.serve.host}:{settings.serve.port}"
    console.print(
        f"[bold green]ragjet[/] web UI and API on [link={url}]{url}[/link]  (gRPC on port {settings.serve.grpc_port})"
    )
    console.print(
        "try:  curl -s " + url + "/v1/chat/completions -H 'Content-Type: application/json' "
        '-d \'{"model":"' + settings.serve.default_collection + '","messages":[{"role":"user",'
        '"content":"What does the with statement do?"}]}\''
    )


def serve_on_ray(settings: Settings, address: str | None) -> None:
    """The Ray Serve application (ingress + generation deployments, the `ray` settings) on the cluster at `address`,
    or on a local one; HTTP only (no gRPC). Blocks until interrupted, then stops the application. A cluster that
    does not answer within `ray.connect_timeout_s` is one red line and exit 2."""
    from ragjet.serve.rayserve import require_ray

    try:
        require_ray()
    except ImportError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")  # the message's [ray] is an extra, not markup
        raise typer.Exit(2) from None
    from ray import serve

    from ragjet.serve.rayserve.app import build_app
    from ragjet.serve.rayserve.cluster import ClusterUnreachableError, join_cluster

    configure_logging(settings.serve.log_level, settings.serve.log_json)
    try:
        join_cluster(address, settings.ray.connect_timeout_s)
    except ClusterUnreachableError as exc:
        console.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)  # one line, however long the address
        raise typer.Exit(2) from None
    serve.start(http_options={"host": settings.serve.host, "port": settings.serve.port})
    serve.run(build_app(settings), name=settings.ray.app_name, route_prefix="/", blocking=True)


@app.command()
def serve(
    host: str = typer.Option(None, help="bind address (default from settings: 127.0.0.1)"),
    port: int = typer.Option(None, help="HTTP port (default 8000)"),
    grpc_port: int = typer.Option(None, help="gRPC port (default 50051)"),
    on_ray: bool = typer.Option(
        False, "--ray", help="serve as a Ray Serve application (HTTP only; see the `ray` settings; ragjet[ray])"
    ),
    ray_address: str = typer.Option(
        None, envvar="RAY_ADDRESS", help="with --ray: the cluster to join (default: a local Ray instance)"
    ),
) -> None:
    """Serve the API, the OpenAI-compatible routes, the web UI and gRPC."""
    settings = startup_settings()
    overrides = {k: v for k, v in {"host": host, "port": port, "grpc_port": grpc_port}.items() if v is not None}
    settings.serve = settings.serve.model_copy(update=overrides)
    if on_ray:
        serve_on_ray(settings, ray_address)
        return
    print_banner(settings)
    asyncio.run(serve_forever(settings))
