"""A typed Python client for ragjet's REST API, sync (`Client`) and async (`AsyncClient`).

    from ragjet.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as ragjet:
        answer = ragjet.ask("What does yield do?", collection="python-docs")
        for event in ragjet.ask_stream("What does yield do?"):
            ...  # StreamStart (citations), TextDelta, StreamDone (the whole Answer)

Every route is a method of `Client` (ROUTES; a test walks the server's OpenAPI schema to keep it so); `AsyncClient`
has the query path (ask, ask_stream, embed, search) and collection and review administration (uploads are
sync-only). Errors are typed by the server's error code (client/models.py); 429 and 503 are retried after the
server's Retry-After (or an exponential backoff) while `max_retries` last. The two classes share how requests are
built and responses read; only the sending differs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ragjet.client.models import (
    Answer,
    ChatCompletion,
    CollectionInfo,
    DocumentInfo,
    EmbeddingResponse,
    IngestReport,
    RagjetConnectionError,
    RagjetError,
    ReviewItem,
    SearchResponse,
    error_for,
)
from ragjet.serve.schemas import CitationOut, RagAnswerInfo

Progress = Callable[[int, int], None]  # (bytes sent, bytes in all) of an upload
RETRIED_STATUSES = (429, 503)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamStart:
    citations: list[CitationOut]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    answer: Answer


StreamEvent = StreamStart | TextDelta | StreamDone


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP request, built once, sent by either client."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None


RAGJET_OPTIONS = ("top_k", "filters", "deadline_s", "cache")  # ride in the request's `ragjet` object


def _ask_call(question: str, collection: str | None, stream: bool, options: Mapping[str, Any]) -> _Call:
    """options: top_k, filters, deadline_s, cache (ragjet's), max_tokens, temperature, top_p, seed, stop (OpenAI's)."""
    ragjet = {k: options[k] for k in RAGJET_OPTIONS if options.get(k) is not None}
    ragjet |= {"collection": collection} if collection else {}
    openai = {k: v for k, v in options.items() if k not in RAGJET_OPTIONS and v is not None}
    body = {"model": "ragjet", "messages": [{"role": "user", "content": question}], "stream": stream,
            "ragjet": ragjet, **openai}  # fmt: skip
    return _Call("POST", "/v1/chat/completions", json=body)


class _StreamReader:
    """Server-sent chat completion chunks -> StreamStart, TextDelta..., StreamDone."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def events(self, line: str) -> list[StreamEvent]:
        if not line.startswith("data: ") or line == "data: [DONE]":
            return []
        chunk = json.loads(line[6:])
        choice, info = chunk["choices"][0], chunk.get("ragjet") or {}
        if "citations" in info and choice["finish_reason"] is None:
            return [StreamStart([CitationOut(**c) for c in info["citations"]])]
        if choice["finish_reason"] is None:
            text = choice["delta"].get("content") or ""
            self.pieces.append(text)
            return [TextDelta(text)] if text else []
        done = RagAnswerInfo(**info)
        usage = chunk.get("usage") or {}
        answer = Answer(id=chunk["id"], text="".join(self.pieces), finish_reason=choice["finish_reason"],
                        citations=done.citations, confidence=done.confidence, needs_review=done.needs_review,
                        degraded=done.degraded, review_id=done.review_id, from_cache=done.from_cache,
                        timings_ms=done.timings_ms, prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0))  # fmt: skip
        return [StreamDone(answer)]


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_for(response.status_code, body, response.headers.get("retry-after"))


def _retry_delay(error: RagjetError, attempt: int) -> float | None:
    """Seconds to wait before retrying `error` (the server's Retry-After, else 0.5 s doubling); None: give up."""
    if error.status not in RETRIED_STATUSES:
        return None
    return error.retry_after_s if error.retry_after_s is not None else 0.5 * 2**attempt


class _CountingFile:
    """A file object that reports how much of an upload has been read (what httpx sends as it reads)."""

    def __init__(self, path: Path, sent: list[int], total: int, progress: Progress):
        self._file, self._sent, self._total, self._progress = path.open("rb"), sent, total, progress

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._sent[0] += len(data)
        self._progress(self._sent[0], self._total)
        return data

    def close(self) -> None:
        self._file.close()


def _upload_files(paths: Sequence[Path | str], progress: Progress | None) -> list[tuple[str, tuple[str, Any]]]:
    files = [Path(p) for p in paths]
    total, sent = sum(p.stat().st_size for p in files), [0]
    report = progress or (lambda done, total: None)
    return [("files", (p.name, _CountingFile(p, sent, total, report))) for p in files]


# The Client method that covers each route of the server (a test checks this against its OpenAPI schema).
ROUTES: dict[str, tuple[str, str]] = {
    "ask": ("POST", "/v1/chat/completions"), "embed": ("POST", "/v1/embeddings"), "models": ("GET", "/v1/models"),
    "search": ("POST", "/v1/search"), "collections": ("GET", "/v1/collections"),
    "create_collection": ("POST", "/v1/collections"), "delete_collection": ("DELETE", "/v1/collections/{name}"),
    "documents": ("GET", "/v1/collections/{name}/documents"), "upload": ("POST", "/v1/collections/{name}/documents"),
    "delete_document": ("DELETE", "/v1/collections/{name}/documents"), "review_items": ("GET", "/v1/review"),
    "review_item": ("GET", "/v1/review/{item_id}"), "resolve_review": ("POST", "/v1/review/{item_id}/resolve"),
    "system": ("GET", "/v1/system"), "health": ("GET", "/healthz"), "ready": ("GET", "/readyz"),
}  # fmt: skip


def _collections() -> tuple[_Call, Callable[[Any], list[CollectionInfo]]]:
    return _Call("GET", "/v1/collections"), lambda body: [CollectionInfo(**c) for c in body["collections"]]


def _create_collection(name: str) -> tuple[_Call, Callable[[Any], CollectionInfo]]:
    return _Call("POST", "/v1/collections", {"name": name}), lambda body: CollectionInfo(**body)


def _documents(name: str) -> tuple[_Call, Callable[[Any], list[DocumentInfo]]]:
    parse: Callable[[Any], list[DocumentInfo]] = lambda body: [DocumentInfo(**d) for d in body["documents"]]  # noqa: E731
    return _Call("GET", f"/v1/collections/{name}/documents"), parse


def _delete_document(name: str, source: str) -> _Call:
    return _Call("DELETE", f"/v1/collections/{name}/documents", params={"source": source})


def _review_items(status: str | None, limit: int) -> tuple[_Call, Callable[[Any], list[ReviewItem]]]:
    params = {"limit": limit, **({"status": status} if status else {})}
    return _Call("GET", "/v1/review", params=params), lambda body: [ReviewItem(**i) for i in body["items"]]


def _resolve_review(item_id: str, answer: str, reviewer: str | None) -> tuple[_Call, Callable[[Any], ReviewItem]]:
    body = {"answer": answer, **({"reviewer": reviewer} if reviewer else {})}
    return _Call("POST", f"/v1/review/{item_id}/resolve", body), lambda reply: ReviewItem(**reply)


class Client:
    """Synchronous client; also a context manager that closes its connection pool."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 2, http: httpx.Client | None = None):  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)
        self.max_retries = max_retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: _Call, **extra: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                return _checked(self.http.request(call.method, call.path, json=call.json, params=call.params, **extra))
            except httpx.TransportError as exc:
                raise RagjetConnectionError(f"cannot reach ragjet at {self.http.base_url}: {exc}") from exc
            except RagjetError as error:
                delay = _retry_delay(error, attempt)
                if delay is None or attempt == self.max_retries or "files" in extra:  # an upload is read once
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")

    # answers
    def ask(self, question: str, collection: str | None = None, **options: Any) -> Answer:
        """options: top_k, filters, deadline_s, cache, max_tokens, temperature, top_p, seed, stop."""
        response = self._send(_ask_call(question, collection, False, options))
        return Answer.of(ChatCompletion.model_validate(response.json()))

    def ask_stream(self, question: str, collection: str | None = None, **options: Any) -> Iterator[StreamEvent]:
        call, reader = _ask_call(question, collection, True, options), _StreamReader()
        try:
            with self.http.stream(call.method, call.path, json=call.json) as response:
                if not response.is_success:
                    response.read()
                    _checked(response)
                for line in response.iter_lines():
                    yield from reader.events(line)
        except httpx.TransportError as exc:
            raise RagjetConnectionError(f"cannot reach ragjet at {self.http.base_url}: {exc}") from exc

    def embed(self, texts: list[str]) -> list[list[float]]:
        body = EmbeddingResponse.model_validate(self._send(_Call("POST", "/v1/embeddings", {"input": texts})).json())
        return [item.embedding for item in body.data]  # type: ignore[misc]

    def models(self) -> list[str]:
        return [m["id"] for m in self._send(_Call("GET", "/v1/models")).json()["data"]]

    def search(self, query: str, collection: str | None = None, top_k: int | None = None,
               filters: Mapping[str, Any] | None = None) -> SearchResponse:  # fmt: skip
        body = {"query": query, "collection": collection, "top_k": top_k, "filters": filters}
        response = self._send(_Call("POST", "/v1/search", {k: v for k, v in body.items() if v is not None}))
        return SearchResponse.model_validate(response.json())

    def _json(self, call: _Call, parse: Callable[[Any], T]) -> T:
        return parse(self._send(call).json())

    # collections
    def collections(self) -> list[CollectionInfo]:
        return self._json(*_collections())

    def create_collection(self, name: str) -> CollectionInfo:
        return self._json(*_create_collection(name))

    def delete_collection(self, name: str) -> None:
        self._send(_Call("DELETE", f"/v1/collections/{name}"))

    def documents(self, name: str) -> list[DocumentInfo]:
        return self._json(*_documents(name))

    def upload(self, name: str, paths: Sequence[Path | str], progress: Progress | None = None) -> IngestReport:
        """Upload files and ingest them; `progress(sent, total)` follows the bytes as they go."""
        files = _upload_files(paths, progress)
        try:
            response = self._send(_Call("POST", f"/v1/collections/{name}/documents"), files=files)
        finally:
            for _, (_, f) in files:
                f.close()
        return IngestReport(**response.json()["report"])

    def delete_document(self, name: str, source: str) -> None:
        self._send(_delete_document(name, source))

    # review queue
    def review_items(self, status: str | None = None, limit: int = 100) -> list[ReviewItem]:
        return self._json(*_review_items(status, limit))

    def review_item(self, item_id: str) -> ReviewItem:
        return self._json(_Call("GET", f"/v1/review/{item_id}"), lambda body: ReviewItem(**body))

    def resolve_review(self, item_id: str, answer: str, reviewer: str | None = None) -> ReviewItem:
        return self._json(*_resolve_review(item_id, answer, reviewer))

    # the server
    def system(self) -> dict[str, Any]:
        return self._json(_Call("GET", "/v1/system"), dict)

    def health(self) -> bool:
        return self._json(_Call("GET", "/healthz"), lambda body: body.get("status") == "ok")

    def ready(self) -> bool:
        try:
            self._send(_Call("GET", "/readyz"))
        except RagjetConnectionError:
            raise
        except RagjetError:
            return False
        return True


class AsyncClient:
    """The same API for asyncio: every method is a coroutine, `ask_stream` an async iterator."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 2, http: httpx.AsyncClient | None = None):  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s)
        self.max_retries = max_retries

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                return _checked(await self.http.request(call.method, call.path, json=call.json, params=call.params))
            except httpx.TransportError as exc:
                raise RagjetConnectionError(f"cannot reach ragjet at {self.http.base_url}: {exc}") from exc
            except RagjetError as error:
                delay = _retry_delay(error, attempt)
                if delay is None or attempt == self.max_retries:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def ask(self, question: str, collection: str | None = None, **options: Any) -> Answer:
        response = await self._send(_ask_call(question, collection, False, options))
        return Answer.of(ChatCompletion.model_validate(response.json()))

    async def ask_stream(self, question: str, collection: str | None = None, **options: Any
                         ) -> AsyncIterator[StreamEvent]:  # fmt: skip
        call, reader = _ask_call(question, collection, True, options), _StreamReader()
        try:
            async with self.http.stream(call.method, call.path, json=call.json) as response:
                if not response.is_success:
                    await response.aread()
                    _checked(response)
                async for line in response.aiter_lines():
                    for event in reader.events(line):
                        yield event
        except httpx.TransportError as exc:
            raise RagjetConnectionError(f"cannot reach ragjet at {self.http.base_url}: {exc}") from exc

    async def embed(self, texts: list[str]) -> list[list[float]]:
        response = await self._send(_Call("POST", "/v1/embeddings", {"input": texts}))
        return [item.embedding for item in EmbeddingResponse.model_validate(response.json()).data]  # type: ignore[misc]

    async def search(self, query: str, collection: str | None = None, top_k: int | None = None,
                     filters: Mapping[str, Any] | None = None) -> SearchResponse:  # fmt: skip
        body = {"query": query, "collection": collection, "top_k": top_k, "filters": filters}
        response = await self._send(_Call("POST", "/v1/search", {k: v for k, v in body.items() if v is not None}))
        return SearchResponse.model_validate(response.json())

    async def collections(self) -> list[CollectionInfo]:
        return await self._json(*_collections())

    async def _json(self, call: _Call, parse: Callable[[Any], T]) -> T:
        return parse((await self._send(call)).json())

    async def create_collection(self, name: str) -> CollectionInfo:
        return await self._json(*_create_collection(name))

    async def delete_collection(self, name: str) -> None:
        await self._send(_Call("DELETE", f"/v1/collections/{name}"))

    async def documents(self, name: str) -> list[DocumentInfo]:
        return await self._json(*_documents(name))

    async def delete_document(self, name: str, source: str) -> None:
        await self._send(_delete_document(name, source))

    async def review_items(self, status: str | None = None, limit: int = 100) -> list[ReviewItem]:
        return await self._json(*_review_items(status, limit))

    async def resolve_review(self, item_id: str, answer: str, reviewer: str | None = None) -> ReviewItem:
        return await self._json(*_resolve_review(item_id, answer, reviewer))
