"""OpenAI-compatible routes: chat completions (answers grounded in a collection), embeddings, models."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragjet.config import Settings
from ragjet.rag.types import Answer, AnswerDelta, AnswerDone, AnswerStart
from ragjet.serve.contract import UnknownModelError
from ragjet.serve.deps import PipelineDep, SettingsDep, TenantDep
from ragjet.serve.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CitationOut,
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    PromptTokensDetails,
    RagAnswerInfo,
    Usage,
)

router = APIRouter(prefix="/v1", tags=["openai"])


DEFAULT_MODEL = "ragjet"  # the OpenAI model name that means the server's default collection


def model_names(settings: Settings, collections: list[str]) -> list[str]:
    """Every `model` a client may send: ragjet, the configured aliases, then the caller's collections."""
    return list(dict.fromkeys([DEFAULT_MODEL, *settings.serve.model_aliases, *collections]))


def resolve_collection(model: str, requested: str | None, settings: Settings, collections: list[str]) -> str:
    """`ragjet.collection` wins; else `model` names a collection, or means the default one (ragjet, an alias).

    Any other model is UnknownModelError (a 404 that lists the models), never a silent fall back to
    the default collection: a typo must not answer from another collection.
    """
    if requested:
        return requested
    if model in collections:
        return model
    if model == DEFAULT_MODEL or model in settings.serve.model_aliases:
        return settings.serve.default_collection
    raise UnknownModelError(model, model_names(settings, collections))


def completion_body(answer: Answer, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{answer.request_id}",
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=answer.text), finish_reason=answer.finish_reason)],
        usage=Usage(
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=answer.prompt_tokens + answer.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=answer.cached_prompt_tokens),
        ),
        ragjet=RagAnswerInfo.of(answer),
    )


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def stream_chunks(events: AsyncIterator[object], model: str) -> AsyncIterator[str]:
    """OpenAI chunk stream: a role delta, content deltas, a closing chunk with finish_reason and ragjet info."""
    created, chunk_id = int(time.time()), "chatcmpl-pending"

    def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
        body = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return _sse(body)

    async for event in events:
        if isinstance(event, AnswerStart):
            chunk_id = f"chatcmpl-{event.request_id}"
            citations = [CitationOut.of(c).model_dump() for c in event.citations]
            yield chunk({"role": "assistant", "content": ""}, ragjet={"citations": citations})
        elif isinstance(event, AnswerDelta) and event.text:
            yield chunk({"content": event.text})
        elif isinstance(event, AnswerDone):
            a = event.answer
            usage = {
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "total_tokens": a.prompt_tokens + a.completion_tokens,
            }
            yield chunk({}, a.finish_reason, usage=usage, ragjet=RagAnswerInfo.of(a).model_dump())
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    req: ChatCompletionRequest, request: Request, pipeline: PipelineDep, settings: SettingsDep, tenant: TenantDep
) -> ChatCompletion | StreamingResponse:
    """Answer the last user message from a collection, with citations (OpenAI chat completions schema)."""
    collections = [] if req.ragjet.collection else [c.name for c in await pipeline.list_collections(tenant)]
    collection = resolve_collection(req.model, req.ragjet.collection, settings, collections)
    params = req.ask_params(collection)
    options = params.options(settings.serve.default_collection, tenant, getattr(request.state, "arrived_at", None))
    if req.stream:
        events = pipeline.ask_stream(params.question, options)
        first = await anext(aiter(events))  # surface 404/400/429 as a status before the stream starts

        async def replay() -> AsyncIterator[object]:
            yield first
            async for event in events:
                yield event

        return StreamingResponse(stream_chunks(replay(), req.model), media_type="text/event-stream")
    answer = await pipeline.ask(params.question, options)
    return completion_body(answer, req.model)


@router.post("/embeddings", response_model=EmbeddingResponse)
async def embeddings(req: EmbeddingRequest, pipeline: PipelineDep, _: TenantDep) -> EmbeddingResponse:
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors = await pipeline.embed(texts)
    num_tokens = sum(len(t.split()) for t in texts)
    return EmbeddingResponse(
        data=[EmbeddingItem(index=i, embedding=_encode(v, req.encoding_format)) for i, v in enumerate(vectors)],
        model=req.model,
        usage=EmbeddingUsage(prompt_tokens=num_tokens, total_tokens=num_tokens),
    )


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


@router.get("/models")
async def models(pipeline: PipelineDep, settings: SettingsDep, tenant: TenantDep) -> dict[str, object]:
    """Collections are offered as models, so a plain OpenAI client can pick one by name."""
    names = model_names(settings, [c.name for c in await pipeline.list_collections(tenant)])
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragjet"} for n in names]}
