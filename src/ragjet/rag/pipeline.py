"""The RAG pipeline: question → query embedding → two-stage retrieval → prompt → streamed, cited answer.

Every model stage runs off the event loop: the query embedding goes through the dynamic batcher (so
concurrent questions share one forward), retrieval and prompt assembly run in worker threads, and the
LLM backend decodes on its own engine thread. Many requests are in flight at once, so request B's
retrieval overlaps request A's decode.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import TypeVar

import numpy as np

from ragjet.config import LLMSettings, Settings
from ragjet.cpu_threads import single_threaded_executor
from ragjet.embed.batcher import BatcherStats, DynamicBatcher
from ragjet.embed.embedder import NUM_CALIBRATION_CHUNKS, Embedder
from ragjet.embed.onnx_embedder import OnnxOptions
from ragjet.llm.backends import LLMBackend, create_backend
from ragjet.llm.engine.outputs import EngineStats
from ragjet.obs.logs import current_request_id
from ragjet.rag.admission import AdmissionController
from ragjet.rag.answer_cache import AnswerCache, CacheScope, from_cache
from ragjet.rag.answering import PreparedRequest, answered, build_answer, sampling_params, validate_options
from ragjet.rag.collection_admin import CollectionAdmin, require
from ragjet.rag.collections import CollectionRegistry
from ragjet.rag.confidence_model import load_confidence_model
from ragjet.rag.context import choose_context, not_found_answer
from ragjet.rag.deadline import Deadline
from ragjet.rag.generation import GenerationTrace, extractive_answer, fallback_reason, stream_generation
from ragjet.rag.prompt import PromptBuilder
from ragjet.rag.review import ReviewQueue
from ragjet.rag.tenants import DEFAULT_TENANT
from ragjet.rag.types import (
    Answer,
    AnswerDelta,
    AnswerDone,
    AnswerEvent,
    AnswerStart,
    AskOptions,
    Citation,
    StageTimings,
    answer_events,
)
from ragjet.retrieve import Retriever, SearchHit
from ragjet.retrieve.cross_encoder import CrossEncoder
from ragjet.store.errors import CollectionError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEDUP_SLACK = 2  # extra hits fetched so that dropping near-duplicates still leaves top_k sources
CALIBRATION_READ = 8192  # chunks of embed.calibration_collection read; calibration spreads its picks over them


def decodes_on_cpu(settings: LLMSettings) -> bool:
    """Whether generation runs our own engine on this machine's CPU: its step thread then needs the cores'
    only OpenMP team, and the pipeline's helper threads run torch single-threaded."""
    from ragjet.device import pick_device

    return settings.backend == "native" and pick_device(settings.device).type == "cpu"


class RagPipeline(CollectionAdmin):
    """One process-wide pipeline shared by the REST, OpenAI, gRPC and CLI transports.

    Errors: an unknown collection raises CollectionNotFoundError, bad options ValueError, an engine
    at capacity EngineOverloadedError, a deadline passed before generation DeadlineExceededError.
    """

    def __init__(self, settings: Settings, backend_factory: Callable[[LLMSettings], LLMBackend] = create_backend):
        """`backend_factory` builds the generator at start (in a worker thread); the Ray Serve ingress passes one
        that reaches its generation deployment instead of loading a model in-process."""
        self.settings = settings
        self._backend_factory = backend_factory
        self._registries: dict[str, CollectionRegistry] = {}  # one per tenant, each with its own folder
        self._embedder: Embedder | None = None
        self._cross_encoder: CrossEncoder | None = None  # retrieve.rerank = "cross-encoder"
        self._batcher: DynamicBatcher | None = None
        self._backend: LLMBackend | None = None
        self._prompts: PromptBuilder | None = None
        self._start_lock = asyncio.Lock()
        self._review: ReviewQueue | None = None
        self._writes: ThreadPoolExecutor | None = None  # collection writes: see _write
        self.admission = AdmissionController(settings.rag.max_in_flight, settings.llm.max_num_seqs)
        self.answers = AnswerCache(settings.rag.answer_cache_entries, settings.rag.answer_cache_similarity)
        # Called with every finished answer (metrics, tracing): the transports never observe it themselves.
        self.observers: list[Callable[[Answer, AskOptions], None]] = []

    @property
    def is_ready(self) -> bool:
        return self._prompts is not None

    async def start(self, generate: bool = True) -> None:
        """Load the embedder (behind a dynamic batcher) and, unless `generate` is False, the LLM backend.

        Retrieval-only work (ingest, search, retrieval evaluation) never pays for loading a generator.
        A second call loads only what is still missing.
        """
        async with self._start_lock:
            if generate:  # a bad confidence model file fails here, before any model loads, not on every answer
                load_confidence_model(self.settings.rag.confidence_model)
            embed = self.settings.embed
            if self._embedder is None:
                # Decided once, before any helper thread runs torch: see ragjet/cpu_threads.py.
                single_threaded = generate and decodes_on_cpu(self.settings.llm)
                if single_threaded:
                    asyncio.get_running_loop().set_default_executor(single_threaded_executor("ragjet-helper"))
                    self._writes = self._writes or single_threaded_executor("ragjet-writer")
                self._embedder = await asyncio.to_thread(load_embedder, self.settings, single_threaded)
                self._batcher = DynamicBatcher(
                    self._embedder, embed.batch_size, embed.max_wait_ms, single_threaded=single_threaded
                )
                self._cross_encoder = await asyncio.to_thread(load_cross_encoder, self.settings)
                for registry in self._registries.values():
                    registry.embedder, registry.cross_encoder = self._embedder, self._cross_encoder
            if self._review is None:
                self._review = ReviewQueue(self.settings.data_dir.expanduser() / "review.db")
            if generate and self._backend is None:
                backend = await asyncio.to_thread(self._backend_factory, self.settings.llm)
                self._backend = backend
                self._prompts = PromptBuilder(backend, self.settings.rag.system_prompt, self.settings.llm.max_model_len)

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
        if self._batcher is not None:
            self._batcher.close()
        if self._review is not None:
            self._review.close()
        if self._writes is not None:
            self._writes.shutdown(wait=False)
            self._writes = None
        self._backend = self._batcher = self._prompts = self._embedder = self._review = self._cross_encoder = None
        for registry in self._registries.values():
            registry.embedder, registry.cross_encoder = None, None

    def batcher_stats(self) -> BatcherStats:
        """Query-embedding batches formed so far (sizes show whether concurrent questions shared forwards)."""
        return require(self._batcher).stats

    def review_queue(self) -> ReviewQueue:
        """Answers flagged for human review (and the resolved ones served in their place)."""
        return require(self._review)

    def engine_stats(self) -> EngineStats:
        """The LLM engine's running/waiting sequences and KV blocks, for health checks and tests."""
        return require(self._backend).stats()

    # --- answering -------------------------------------------------------------------------------

    async def ask(self, question: str, options: AskOptions) -> Answer:
        async with aclosing(self.ask_stream(question, options)) as events:
            async for event in events:
                if isinstance(event, AnswerDone):
                    return event.answer
        raise RuntimeError("answer stream ended without an AnswerDone event")

    async def ask_stream(self, question: str, options: AskOptions) -> AsyncGenerator[AnswerEvent, None]:
        """AnswerStart (citations known), AnswerDelta per generated piece, AnswerDone.

        Leaving the stream early (aclose, client disconnect) cancels the generation in the engine.
        """
        deadline_s = options.deadline_s or self.settings.rag.deadline_s
        # The clock runs from the transport's arrival stamp, so time queued in front of the pipeline counts too.
        deadline = Deadline.start(deadline_s, options.arrived_at)
        remaining = deadline.remaining_s()
        with self.admission.admit(deadline_s if remaining is None else max(remaining, 0.0)):
            # SQLite off the loop: a review write holding the queue's lock must not stall every other request.
            resolved = await deadline.run("review lookup", asyncio.to_thread(self._resolved, question, options))
            if resolved is not None:
                for event in resolved:
                    if isinstance(event, AnswerDone):
                        self._notify(event.answer, options)
                    yield event
                return
            request = await self._prepare(question, options, deadline)
            if request.ready is not None:
                for event in answer_events(request.ready):
                    yield event
                self._notify(request.ready, options)
                return
            yield AnswerStart(request.request_id, request.prompt.citations)
            trace = GenerationTrace()
            backend, params = require(self._backend), sampling_params(options)
            generation = stream_generation(backend, request.prompt.segments(), params, request.deadline, trace,
                                           self.settings.rag.stop_on_repetition)  # fmt: skip
            async with aclosing(generation) as pieces:
                async for piece in pieces:
                    yield AnswerDelta(piece)
            degraded = fallback_reason(trace)
            if degraded is not None:
                text = ("\n\n" if trace.text else "") + extractive_answer(request.prompt.citations)
                trace.pieces.append(text)
                yield AnswerDelta(text)
            # A CPU-served answer is the same model's answer, only slower: reported, but not sent for review.
            flagged = [r for r in (request.retrieval_fallback, degraded) if r is not None]
            reasons = [r for r in (request.retrieval_fallback, trace.device_fallback, degraded) if r is not None]
            degraded_by = "; ".join(reasons) or None
            answer = build_answer(question, request, trace, degraded_by, bool(flagged), self.settings.rag)
            if answer.needs_review and self._review is not None:
                review = self._review
                answer.review_id = await asyncio.to_thread(
                    review.add, options.tenant, options.collection, question, answer
                )
            if request.cache_scope is not None and request.vector is not None:
                self.answers.store(request.cache_scope, question, request.vector, answer)
            self._notify(answer, options)
            yield AnswerDone(answer)

    def _notify(self, answer: Answer, options: AskOptions) -> None:
        for observe in self.observers:
            observe(answer, options)

    def _resolved(self, question: str, options: AskOptions) -> list[AnswerEvent] | None:
        """A reviewer's answer to this very question, served instead of generating again."""
        review = self._review
        item = review.resolved_answer(options.tenant, options.collection, question) if review is not None else None
        if item is None or item.resolution is None:
            return None
        citations = [Citation(**c) for c in item.citations]  # type: ignore[arg-type]
        answer = Answer(
            request_id=current_request_id() or uuid.uuid4().hex[:16],
            text=item.resolution,
            citations=citations,
            timings=StageTimings(),
            confidence=1.0,
            review_id=item.id,
        )
        return answer_events(answer)

    async def _prepare(self, question: str, options: AskOptions, deadline: Deadline) -> PreparedRequest:
        """Look in the answer cache (by the words, then by the embedding), retrieve, choose the context, build the
        prompt."""
        top_k = validate_options(question, options, self.settings)
        timings = StageTimings()
        request_id = current_request_id() or uuid.uuid4().hex[:16]
        registry = self.collections(options.tenant)
        retriever = registry.retriever(options.collection)  # an unknown collection fails before any model work
        scope = CacheScope.of(options, registry.version(options.collection)) if options.use_cache else None
        cached = None if scope is None else self.answers.lookup(scope, question)  # the same words: no embedding
        if cached is not None:
            return answered(from_cache(cached, request_id, timings), deadline)
        vector = await self._embed_query(question, deadline, timings)
        cached = None if scope is None else self.answers.lookup(scope, question, vector)  # nearly the same words
        if cached is not None:
            return answered(from_cache(cached, request_id, timings), deadline)
        hits, fallback = await self._search(retriever, question, vector, top_k + DEDUP_SLACK, options.filters,
                                            deadline, timings)  # fmt: skip
        context = choose_context(hits, self.settings.rag)
        if context.not_found:
            return answered(not_found_answer(request_id, timings), deadline)
        started = time.perf_counter()
        prompts = require(self._prompts)
        prompt = await deadline.run(
            "prompt assembly", asyncio.to_thread(prompts.build, question, context.hits, options.max_tokens, top_k)
        )
        timings.prompt_ms = (time.perf_counter() - started) * 1e3
        deadline.check("prompt assembly")
        dense = {h.chunk_id: h.dense_score for h in hits}
        scores = [score for c in prompt.citations if (score := dense.get(c.chunk_id)) is not None]
        return PreparedRequest(request_id, deadline, prompt, scores, timings, fallback, cache_scope=scope,
                               vector=vector)  # fmt: skip

    # --- retrieval -------------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        collection: str,
        top_k: int | None = None,
        filters: Mapping[str, object] | None = None,
        timings: StageTimings | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[SearchHit]:
        """Retrieval without generation; `timings`, when given, receives this query's embed/search/rerank times."""
        if not query.strip():
            raise ValueError("query must not be empty")
        k = top_k if top_k is not None else self.settings.retrieve.top_k
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        timings = timings if timings is not None else StageTimings()
        started = time.perf_counter()
        hits, _ = await self._retrieve(query, collection, k, filters, Deadline.start(None), timings, tenant)
        timings.total_ms = (time.perf_counter() - started) * 1e3
        return hits

    async def _retrieve(
        self,
        query: str,
        collection: str,
        top_k: int,
        filters: Mapping[str, object] | None,
        deadline: Deadline,
        timings: StageTimings,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[list[SearchHit], str | None]:
        """The hits, and why the backup index answered if the primary failed ("index fallback: ...")."""
        retriever = self.collections(tenant).retriever(collection)  # unknown collection fails before any model work
        vector = await self._embed_query(query, deadline, timings)
        return await self._search(retriever, query, vector, top_k, filters, deadline, timings)

    async def _embed_query(self, query: str, deadline: Deadline, timings: StageTimings) -> np.ndarray:
        batcher = require(self._batcher)
        started = time.perf_counter()
        vector = await deadline.run("query embedding", batcher.embed(query))
        timings.embed_ms = (time.perf_counter() - started) * 1e3
        return vector

    async def _search(
        self,
        retriever: Retriever,
        query: str,
        vector: np.ndarray,
        top_k: int,
        filters: Mapping[str, object] | None,
        deadline: Deadline,
        timings: StageTimings,
    ) -> tuple[list[SearchHit], str | None]:
        search = asyncio.to_thread(retriever.search_vector, query, vector, top_k, filters, deadline.remaining_s())
        result = await deadline.run("retrieval", search)
        if result.rerank_note is not None:
            log.info("rerank: %s", result.rerank_note)
        timings.search_ms = result.search_ms
        timings.rerank_ms = result.rerank_ms
        return result.hits, None if result.fallback is None else f"index fallback: {result.fallback}"

    async def embed(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32 embeddings; each text joins the dynamic batcher like a query does."""
        batcher = require(self._batcher)
        vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
        return np.stack(vectors) if vectors else np.zeros((0, require(self._embedder).dim), np.float32)


def load_embedder(settings: Settings, single_threaded: bool) -> Embedder:
    """The embedder the settings name; an ONNX one runs on one thread where torch's helpers do (cpu_threads.py)."""
    embed = settings.embed
    texts = calibration_texts(settings) if embed.precision == "int8" else ()
    onnx = OnnxOptions(settings.cache_dir / "embed", embed.int8_scheme, texts, 1 if single_threaded else None)
    return Embedder.load(embed.model, embed.device, embed.precision, embed.backend, onnx)


def calibration_texts(settings: Settings) -> tuple[str, ...]:
    """embed.calibration_collection's chunks for INT8 calibration (none named: the demo corpus's). ValueError naming
    the setting when the collection cannot be read or holds too few chunks to calibrate on."""
    name = settings.embed.calibration_collection
    if not name:
        return ()
    try:
        texts = CollectionRegistry(settings).chunk_texts(name, CALIBRATION_READ)
    except (CollectionError, ValueError) as exc:
        raise ValueError(f"embed.calibration_collection {name!r}: {exc}") from exc
    if len(texts) < NUM_CALIBRATION_CHUNKS:
        raise ValueError(f"embed.calibration_collection {name!r} holds {len(texts)} chunks; INT8 calibration needs "
                         f"{NUM_CALIBRATION_CHUNKS}")  # fmt: skip
    return tuple(texts)


def load_cross_encoder(settings: Settings) -> CrossEncoder | None:
    retrieve = settings.retrieve
    if retrieve.rerank != "cross-encoder":
        return None
    if not retrieve.cross_encoder_model:
        raise ValueError("retrieve.rerank = 'cross-encoder' needs retrieve.cross_encoder_model (a local directory)")
    return CrossEncoder.load(retrieve.cross_encoder_model, device=settings.embed.device)
