"""`ragjet generate PROMPT`: stream a completion from the configured LLM backend, no retrieval."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import aclosing
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from ragjet.cli import app
from ragjet.cli.errors import err_console, exit_on_user_error
from ragjet.config import LLMSettings, load_settings

if TYPE_CHECKING:
    from ragjet.llm.sampling_params import SamplingParams


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="the prompt (a user message unless --raw)"),
    model: str = typer.Option(None, "--model", "-m", help="packaged model name, GGUF file or HF directory"),
    max_tokens: int = typer.Option(256, "--max-tokens", help="most tokens to generate"),
    temperature: float = typer.Option(None, "--temperature", help="0 = greedy (default: engine default)"),
    top_p: float = typer.Option(None, "--top-p", help="nucleus sampling mass"),
    top_k: int = typer.Option(None, "--top-k", help="sample among the k likeliest tokens (0 = all)"),
    seed: int = typer.Option(None, "--seed", help="makes sampling repeatable"),
    chat: bool = typer.Option(True, "--chat/--raw", help="wrap the prompt in the model's chat template"),
    backend: str = typer.Option(None, "--backend", help="native or openai (default: settings)"),
) -> None:
    """Generate text for a prompt, streaming tokens as they are produced."""
    with exit_on_user_error():
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        llm = llm_settings(model, backend)
        params = sampling_params(max_tokens, temperature, top_p, top_k, seed)
        summary = asyncio.run(stream_completion(llm, prompt, params, chat))
    err_console.print(escape(summary), style="dim", highlight=False)


def llm_settings(model: str | None, backend: str | None) -> LLMSettings:
    overrides = {k: v for k, v in (("model", model), ("backend", backend)) if v is not None}
    settings = load_settings().llm
    if not overrides:
        return settings
    return load_settings(llm=settings.model_dump() | overrides).llm


def sampling_params(
    max_tokens: int, temperature: float | None, top_p: float | None, top_k: int | None, seed: int | None
) -> SamplingParams:
    from ragjet.llm.sampling_params import SamplingParams

    defaults = SamplingParams()
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p if top_p is None else top_p,
        top_k=defaults.top_k if top_k is None else top_k,
        seed=seed,
    )


async def stream_completion(llm: LLMSettings, prompt: str, params: SamplingParams, chat: bool) -> str:
    """Write the completion to stdout as it streams; returns the one-line timing summary."""
    from ragjet.llm.backends import create_backend

    backend = await asyncio.to_thread(create_backend, llm)
    try:
        text = backend.format_chat([{"role": "user", "content": prompt}]) if chat else prompt
        started = time.perf_counter()
        first_at: float | None = None
        num_tokens = 0
        finish_reason = "stop"
        async with aclosing(backend.stream(text, params)) as deltas:
            async for delta in deltas:
                first_at = first_at if first_at is not None else time.perf_counter()
                num_tokens += delta.num_tokens
                finish_reason = delta.finish_reason or finish_reason
                sys.stdout.write(delta.text)
                sys.stdout.flush()
        sys.stdout.write("\n")
    finally:
        await backend.close()
    return summary_line(started, first_at, time.perf_counter(), num_tokens, finish_reason)


def summary_line(started: float, first_at: float | None, ended: float, num_tokens: int, finish_reason: str) -> str:
    ttft_s = (first_at if first_at is not None else ended) - started
    decode_s = ended - (first_at if first_at is not None else ended)
    rate = f"{(num_tokens - 1) / decode_s:.1f} tok/s" if num_tokens > 1 and decode_s > 0 else "– tok/s"
    return f"TTFT {ttft_s * 1e3:.0f} ms · {num_tokens} tokens · {rate} · {finish_reason}"
