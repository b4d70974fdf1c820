"""The end-to-end benchmark's peer: a serial RAG server built the way a LangChain/LlamaIndex app usually is.

sentence-transformers embeds the question, a faiss IndexFlatIP over the chunks finds the top k,
transformers `generate` answers, and one lock around the whole pipeline serves one request at a time
behind FastAPI + uvicorn. It reads the chunk texts of a ragjet collection (the same chunks ragjet
serves), embeds them itself at startup, and builds its prompt with ragjet's template and system
prompt, so both servers answer from the same sources in the same words. The reference repeats some
sections in several topics, so like ragjet it drops duplicate chunks from a few extra candidates.

Run as ``python -m benchmarks.e2e_baseline --collection-dir DIR --port N``. It speaks the streaming
subset of OpenAI chat completions the load generator uses; its closing chunk carries
``pipeline: {chunk_ids, timings_ms}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from ragjet.config import RagSettings
from ragjet.models import resolve_model
from ragjet.rag.pipeline import DEDUP_SLACK
from ragjet.rag.prompt import RetrievedChunk, dedupe, source_header, user_message
from ragjet.store import Collection

EMBED_MODEL, LLM_MODEL = "all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    text: str
    score: float
    source: str
    title: str
    heading: str
    page: int | None


class _TokenQueue:
    """A transformers streamer handing each new token id to an asyncio queue (the first put() is the prompt)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[int | None]):
        self.loop, self.queue, self.is_prompt = loop, queue, True

    def put(self, value: torch.Tensor) -> None:
        if self.is_prompt:
            self.is_prompt = False
            return
        for token_id in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, int(token_id))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class SerialRag:
    """embed → faiss → prompt → generate, for one request at a time."""

    def __init__(self, collection_dir: Path):
        import faiss
        from sentence_transformers import SentenceTransformer
        from transformers import AutoTokenizer

        from benchmarks.llm_peers import transformers_model_from_gguf

        collection = Collection.open(collection_dir.parent, collection_dir.name)
        ids = np.concatenate([batch_ids for batch_ids, _, _ in collection.store.iter_chunks()])
        self.chunks = collection.store.chunks(ids)
        self.embedder = SentenceTransformer(str(resolve_model(EMBED_MODEL)), device="cpu")
        vectors = self.embedder.encode([c.text for c in self.chunks], batch_size=64, normalize_embeddings=True)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.asarray(vectors, dtype=np.float32))
        gguf = resolve_model(LLM_MODEL)
        self.tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        self.model = transformers_model_from_gguf(gguf, torch.float32, "cpu")
        self.system_prompt = RagSettings().system_prompt
        self.lock = asyncio.Lock()

    def retrieve(self, question: str, top_k: int) -> tuple[list[RetrievedChunk], float, float]:
        """Top-k distinct chunks by cosine, with the embed and search times in ms."""
        started = time.perf_counter()
        query = self.embedder.encode([question], normalize_embeddings=True)
        embedded = time.perf_counter()
        scores, rows = self.index.search(np.asarray(query, dtype=np.float32), top_k + DEDUP_SLACK)
        hits = [
            Hit(c.chunk_id, c.text, float(s), c.source, c.title, c.heading, c.page)
            for s, r in zip(scores[0], rows[0], strict=True)
            if r >= 0
            for c in (self.chunks[r],)
        ]
        distinct = dedupe(hits)[:top_k]  # the same candidates and rule as ragjet's prompt builder
        searched = time.perf_counter()
        return distinct, (embedded - started) * 1e3, (searched - embedded) * 1e3

    def prompt_ids(self, question: str, hits: list[RetrievedChunk]) -> list[int]:
        blocks = [f"{source_header(i + 1, h)}\n{h.text.strip()}" for i, h in enumerate(hits)]
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user_message(question, blocks)},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(self, prompt: list[int], max_tokens: int, streamer: _TokenQueue) -> None:
        """Greedy, stopping at end-of-sequence or after max_tokens (the same rule as the ragjet request)."""
        input_ids = torch.tensor([prompt])
        with torch.inference_mode():
            self.model.generate(  # type: ignore[operator]
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                streamer=streamer,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.eos_token_id,
            )

    async def answer(self, body: dict[str, Any], arrived: float) -> AsyncIterator[str]:
        """OpenAI-style chunks: content deltas, then a closing chunk with usage and this pipeline's timings."""
        question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        max_tokens = int(body.get("max_tokens") or 256)
        top_k = int((body.get("ragjet") or {}).get("top_k") or 4)
        async with self.lock:
            locked = time.perf_counter()
            hits, embed_ms, search_ms = await asyncio.to_thread(self.retrieve, question, top_k)
            started = time.perf_counter()
            prompt = self.prompt_ids(question, hits)
            queue: asyncio.Queue[int | None] = asyncio.Queue()
            generating = time.perf_counter()
            thread = threading.Thread(
                target=self.generate, args=(prompt, max_tokens, _TokenQueue(asyncio.get_running_loop(), queue))
            )
            thread.start()
            try:
                tokens, text, first_at = [], "", None
                while (token_id := await queue.get()) is not None:
                    first_at = first_at or time.perf_counter()
                    tokens.append(token_id)
                    full = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
                    if len(full) > len(text) and not full.endswith("\ufffd"):
                        yield _sse({"choices": [{"index": 0, "delta": {"content": full[len(text) :]}}]})
                        text = full
                ended = time.perf_counter()
            finally:
                await asyncio.to_thread(thread.join)  # the lock stays held until generate has returned
        first_at = first_at or ended
        timings = {
            "queue_ms": (locked - arrived) * 1e3,
            "embed_ms": embed_ms,
            "search_ms": search_ms,
            "prompt_ms": (generating - started) * 1e3,
            "prefill_ms": (first_at - generating) * 1e3,
            "decode_ms": (ended - first_at) * 1e3,
            "total_ms": (ended - arrived) * 1e3,
        }
        finish = "length" if len(tokens) >= max_tokens else "stop"
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(tokens)}
        pipeline = {"chunk_ids": [h.chunk_id for h in hits], "timings_ms": timings}
        closing: dict[str, object] = {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}
        yield _sse(closing | {"pipeline": pipeline})
        yield "data: [DONE]\n\n"


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def create_app(rag: SerialRag) -> FastAPI:
    app = FastAPI(title="serial RAG baseline")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}  # the models load before uvicorn starts listening

    @app.post("/v1/chat/completions")
    async def chat_completions(body: dict[str, Any]) -> StreamingResponse:
        return StreamingResponse(rag.answer(body, time.perf_counter()), media_type="text/event-stream")

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection-dir", type=Path, required=True, help="a ragjet collection folder")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(SerialRag(args.collection_dir))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
