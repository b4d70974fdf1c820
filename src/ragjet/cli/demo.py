"""`ragjet demo` (what `make run` calls): the Python language reference as a collection, then the server."""

from __future__ import annotations

import asyncio

from rich.console import Console

from ragjet.cli import app
from ragjet.cli.serve import print_banner, serve_forever, startup_settings
from ragjet.config import Settings

console = Console(stderr=True)


async def ensure_demo_collection(settings: Settings) -> None:
    """Ingest the demo corpus into the default collection unless it already holds documents."""
    from ragjet.ingest.demo import write_demo_corpus
    from ragjet.rag.pipeline import RagPipeline
    from ragjet.store import list_collections

    name = settings.serve.default_collection
    existing = {c.name: c for c in list_collections(settings.collections_dir)}
    if name in existing and existing[name].num_documents > 0:
        console.print(f"collection [bold]{name}[/] ready: {existing[name].num_chunks} chunks")
        return
    console.print(f"ingesting the Python language reference into collection [bold]{name}[/] (once)…")
    pipeline = RagPipeline(settings)
    await pipeline.start(generate=False)
    try:
        # A stable folder, so citations point at files that stay and a later re-ingest finds them unchanged.
        paths = write_demo_corpus(settings.data_dir.expanduser() / "demo-corpus")
        report = await pipeline.ingest(name, paths, progress=True)
    finally:
        await pipeline.close()
    console.print(f"ingested {report.num_added} documents, {report.num_chunks} chunks in {report.seconds:.1f} s")


@app.command()
def demo() -> None:
    """Ingest the demo corpus if needed, then serve the API and web UI on 127.0.0.1:8000."""
    settings = startup_settings()
    if "auth_enabled" not in settings.serve.model_fields_set:
        # The demo listens on localhost only and needs no keys; set RAGJET_SERVE__AUTH_ENABLED=true to require them.
        settings.serve = settings.serve.model_copy(update={"auth_enabled": False})
    asyncio.run(ensure_demo_collection(settings))
    print_banner(settings)
    asyncio.run(serve_forever(settings))
