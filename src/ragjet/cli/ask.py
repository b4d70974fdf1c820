"""`ragjet ask "question"`: stream a cited answer from one collection to the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from ragjet.cli import app
from ragjet.cli.errors import err_console, exit_on_user_error
from ragjet.config import Settings, load_settings
from ragjet.rag.types import Answer, AnswerDelta, AnswerDone, AnswerStart, AskOptions, Citation

if TYPE_CHECKING:
    from ragjet.rag.pipeline import RagPipeline


def citation_line(c: Citation) -> str:
    where = c.source + (f":{c.page}" if c.page is not None else "")
    heading = f", {c.heading}" if c.heading else ""
    mark = "" if c.cited else " (not cited)"
    return f"[{c.number}] {where}{heading}{mark}"


def timing_line(answer: Answer) -> str:
    t = answer.timings.as_dict()
    stages = "  ".join(f"{name.removesuffix('_ms')} {ms:.0f}ms" for name, ms in t.items() if name != "total_ms")
    return (
        f"{stages}  | total {t['total_ms']:.0f}ms, {answer.prompt_tokens} prompt + "
        f"{answer.completion_tokens} completion tokens, confidence {answer.confidence or 0:.2f}"
        + (", needs review" if answer.needs_review else "")
    )


async def stream_answer(settings: Settings, question: str, options: AskOptions, as_json: bool) -> None:
    from ragjet.rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    console = Console()
    await require_collection(pipeline, options.collection)  # fail in milliseconds, before models load
    try:
        await pipeline.start()
        async for event in pipeline.ask_stream(question, options):
            if isinstance(event, AnswerStart) and not event.citations and not as_json:
                err_console.print("[yellow]no matching sources; the answer is ungrounded[/]")
            elif isinstance(event, AnswerDelta) and not as_json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, AnswerDone):
                report(console, event.answer, as_json)
    finally:
        await pipeline.close()


async def require_collection(pipeline: RagPipeline, name: str) -> None:
    from ragjet.store import CollectionNotFoundError

    known = sorted(c.name for c in await pipeline.list_collections())
    if name not in known:
        raise CollectionNotFoundError(name, known)


def report(console: Console, answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(answer), indent=2))
        return
    console.print()
    if answer.finish_reason not in ("stop", "length"):
        console.print(f"[yellow]({answer.finish_reason})[/]")
    for citation in answer.citations:
        console.print(escape(citation_line(citation)), style=None if citation.cited else "dim", highlight=False)
    console.print(escape(timing_line(answer)), style="dim", highlight=False)


@app.command()
def ask(
    question: str = typer.Argument(..., help="the question to answer"),
    collection: str = typer.Option(None, "--collection", "-c", help="collection to answer from (default: settings)"),
    top_k: int = typer.Option(None, "--top-k", min=1, help="sources put into the prompt"),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="longest answer in tokens"),
    deadline: float = typer.Option(None, "--deadline", min=0.001, help="give up after this many seconds"),
    as_json: bool = typer.Option(False, "--json", help="print the whole answer as JSON instead of streaming"),
) -> None:
    """Answer a question from a collection, with numbered citations and per-stage timings."""
    with exit_on_user_error():
        settings = load_settings()
        options = AskOptions(
            collection=collection or settings.serve.default_collection,
            top_k=top_k,
            max_tokens=max_tokens,
            deadline_s=deadline,
        )
        asyncio.run(stream_answer(settings, question, options, as_json))
