"""Chunk-KV reuse: blend mode against full prefill, with and without adaptive context, on fresh questions.

The collection is the demo corpus (the Python language reference); the questions are pydoc-squad's, written over
its paragraphs, several per paragraph. A warm-up pass asks the first question of every paragraph; the measured
passes ask the other questions, which nobody asked before but which retrieve chunks seen before, so only reuse
at any position (blend) can skip their prefill: exact prefix caching hits only where the same chunk comes first.
Half of them are asked by 1 client, the other half by 16 concurrent clients (so no measured prompt repeats one
asked before). The answer cache is off. Quality: answer-contained and token F1 against the gold answers, and
how many answers are word for word the full-prefill ones.

Then TTFT where every chunk of a prompt was seen before, at engine level: prompts of 5 demo-corpus chunks, asked once,
then again with the chunks in another order (another first chunk, so exact prefix caching hits only the system
prompt) and another question: full prefill against blend, same prompts, same run.

Then the chunk cache over a stream of 1,000 fresh questions (retrieval only, the real cache class with each chunk's
real K/V size): does its hit rate hold, or decay as the stream moves across topics?
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.e2e import candidate_questions
from benchmarks.report import BenchRow, machine_description
from ragjet.config import Settings, load_settings
from ragjet.eval.datasets import EvalQuery, load_dataset
from ragjet.eval.metrics import answer_contained, token_f1
from ragjet.ingest.demo import demo_documents, write_demo_corpus
from ragjet.llm.backends.native import engine_config, load_rank
from ragjet.llm.engine.chunk_cache import ChunkKVCache
from ragjet.llm.engine.llm_engine import LLMEngine
from ragjet.llm.loaders import load_model
from ragjet.llm.quantize import compute_dtype
from ragjet.llm.sampling_params import SamplingParams
from ragjet.llm.segments import PromptSegments, split_at_chunks
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.prompt import CITATION_PATTERN, user_message
from ragjet.rag.types import Answer, AskOptions

TITLE = "Chunk-KV reuse (blend) vs full prefill, fresh questions over the demo corpus"
SUITE = "kv_reuse"
COLLECTION = "demo"
MAX_TOKENS = 48
CONCURRENCY = 16
Overrides = dict[str, dict[str, object]]
Questions = tuple[list[EvalQuery], list[EvalQuery], list[EvalQuery]]
CONFIGS: dict[str, Overrides] = {  # label -> settings overrides
    "full prefill": {"llm": {"chunk_reuse": "exact"}, "rag": {"context": "fixed"}},
    "adaptive context": {"llm": {"chunk_reuse": "exact"}, "rag": {"context": "adaptive"}},
    "blend": {"llm": {"chunk_reuse": "blend"}, "rag": {"context": "fixed"}},
    "blend + adaptive": {"llm": {"chunk_reuse": "blend"}, "rag": {"context": "adaptive"}},
}
STREAM_LENGTH = 1000
STREAM_WINDOW = 200


@dataclass
class Asked:
    query: EvalQuery
    answer: Answer


@dataclass
class ConfigRun:
    one_client: list[Asked]
    many_clients: list[Asked]
    many_wall_s: float
    stats: dict[str, int]


def split_questions(limit: int | None) -> Questions:
    """(warm-up: the first question of each paragraph, 1-client half, 16-client half of the rest)."""
    by_paragraph: dict[str, list[EvalQuery]] = defaultdict(list)
    for query in load_dataset("pydoc-squad").queries:
        by_paragraph[next(iter(query.qrels))].append(query)
    groups = [g for g in by_paragraph.values() if len(g) > 1][:limit]
    warm = [g[0] for g in groups]
    fresh = [q for g in groups for q in g[1:]]
    return warm, fresh[::2], fresh[1::2]


async def ask_all(pipeline: RagPipeline, queries: list[EvalQuery], concurrency: int) -> list[Asked]:
    gate = asyncio.Semaphore(concurrency)

    async def one(query: EvalQuery) -> Asked:
        async with gate:
            options = AskOptions(COLLECTION, max_tokens=MAX_TOKENS, use_cache=False, deadline_s=600)
            return Asked(query, await pipeline.ask(query.text, options))

    return list(await asyncio.gather(*(one(q) for q in queries)))


async def run_config(data_dir: Path, overrides: Overrides, questions: Questions) -> ConfigRun:
    warm, one_client, many_clients = questions
    pipeline = RagPipeline(load_settings(data_dir=data_dir, **overrides))
    await pipeline.start()
    try:
        await ask_all(pipeline, warm, 1)
        first = await ask_all(pipeline, one_client, 1)
        started = time.perf_counter()
        second = await ask_all(pipeline, many_clients, CONCURRENCY)
        wall = time.perf_counter() - started
        stats = pipeline.engine_stats()
        chunk_stats = {k: getattr(stats, k) for k in ("chunk_cache_lookups", "chunk_cache_hits",
                                                      "chunk_cache_entries", "chunk_cache_bytes")}  # fmt: skip
        return ConfigRun(first, second, wall, chunk_stats)
    finally:
        await pipeline.close()


async def ingest(data_dir: Path) -> None:
    pipeline = RagPipeline(load_settings(data_dir=data_dir))
    await pipeline.start(generate=False)
    try:
        await pipeline.ingest(COLLECTION, write_demo_corpus(data_dir / "demo-corpus"))
    finally:
        await pipeline.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quality(asked: list[Asked]) -> tuple[float, float]:
    """(answer-contained, token F1), citation marks removed before scoring."""
    texts = [CITATION_PATTERN.sub("", a.answer.text) for a in asked]
    gold = [a.query.answers for a in asked]
    contained = statistics.mean(answer_contained(t, g) for t, g in zip(texts, gold, strict=True))
    return contained, statistics.mean(token_f1(t, g) for t, g in zip(texts, gold, strict=True))


def latency_rows(label: str, run: ConfigRun, base: ConfigRun) -> list[BenchRow]:
    rows = []
    for clients, mine, theirs in ((1, run.one_client, base.one_client), (CONCURRENCY, run.many_clients,
                                                                          base.many_clients)):  # fmt: skip
        for stage, key in (("TTFT (prefill)", "prefill_ms"), ("e2e", "total_ms")):
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                ours = pct([getattr(a.answer.timings, key) for a in mine], q)
                peer = pct([getattr(a.answer.timings, key) for a in theirs], q)
                rows.append(BenchRow(SUITE, f"{label}, {clients} client(s)", f"{name} {stage}", ours, "ms",
                                     peer="full prefill", peer_value=peer, higher_is_better=False))  # fmt: skip
    return rows


def quality_rows(label: str, run: ConfigRun, base: ConfigRun) -> list[BenchRow]:
    mine, theirs = run.one_client + run.many_clients, base.one_client + base.many_clients
    (contained, f1), (base_contained, base_f1) = quality(mine), quality(theirs)
    same = sum(a.answer.text == b.answer.text for a, b in zip(mine, theirs, strict=True)) / len(mine)
    return [
        BenchRow(SUITE, label, "answer contained", contained, "", peer="full prefill", peer_value=base_contained),
        BenchRow(SUITE, label, "token F1", f1, "", peer="full prefill", peer_value=base_f1),
        BenchRow(SUITE, label, "answers identical to full prefill", same, ""),
        BenchRow(SUITE, label, "mean prompt tokens", statistics.mean(a.answer.prompt_tokens for a in mine), "",
                 peer="full prefill", peer_value=statistics.mean(a.answer.prompt_tokens for a in theirs),
                 higher_is_better=False),
    ]  # fmt: skip


async def stream_hit_rates(data_dir: Path, budgets_gb: tuple[float, ...]) -> list[tuple[float, list[float], int]]:
    """For each budget: the chunk cache's hit rate per window of the stream and the bytes it ends with."""
    settings = load_settings(data_dir=data_dir)
    pipeline = RagPipeline(settings)
    await pipeline.start(generate=False)
    try:
        hits = [await pipeline.search(q, COLLECTION, top_k=5) for q in stream_questions()]
    finally:
        await pipeline.close()
    loaded = load_model(settings.llm.model)
    c = loaded.config
    bytes_per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * compute_dtype(loaded.model).itemsize
    sizes = {h.chunk_id: len(loaded.tokenizer.encode(h.text.strip())) * bytes_per_token
             for found in hits for h in found}  # fmt: skip
    results = []
    for budget in budgets_gb:
        cache, rates = ChunkKVCache("stream", int(budget * 2**30)), []
        for start in range(0, len(hits), STREAM_WINDOW):
            lookups_before, hits_before = cache.stats.num_lookups, cache.stats.num_hits
            for found in hits[start : start + STREAM_WINDOW]:
                for h in found:
                    key = [hash(h.chunk_id) & 0x7FFFFFFF]
                    if cache.get(key) is None:
                        cache.put(key, h.chunk_id, None, None, 0, sizes[h.chunk_id])
            rates.append((cache.stats.num_hits - hits_before) / max(1, cache.stats.num_lookups - lookups_before))
        results.append((budget, rates, cache.stats.num_bytes))
    return results


def stream_questions() -> list[str]:
    """1,000 distinct questions: the shipped sets' and questions about the reference's headings, shuffled."""
    asked = [q.text for name in ("pydoc-squad", "python-squad", "python-beir") for q in load_dataset(name).queries]
    about_headings = candidate_questions()  # two phrasings per heading, more here
    more = [q.replace("What does the Python reference say about", "Explain").replace("How does", "When does")
            for q in about_headings]  # fmt: skip
    more += [q.replace("How does", "Give an example of how").replace(" work in Python", " works")
             for q in about_headings]  # fmt: skip
    pool = list(dict.fromkeys(asked + about_headings + more))
    random.Random(0).shuffle(pool)
    return pool[:STREAM_LENGTH]


def seen_before_ttft(num_prompts: int) -> list[BenchRow]:
    """TTFT (a one-token generation) of prompts whose every chunk was seen before, full prefill vs blend."""
    texts = [s.text.strip()[:1000] for d in demo_documents() for s in d.sections if len(s.text) > 1000]
    rng = random.Random(0)
    sets = [rng.sample(range(len(texts)), 5) for _ in range(num_prompts)]
    settings = load_settings()
    timings: dict[str, list[float]] = {}
    for mode in ("exact", "blend"):
        llm = settings.llm.model_copy(update={"chunk_reuse": mode})
        engine = LLMEngine(load_rank(llm, torch.device("cpu"), 0), engine_config(llm))
        one = SamplingParams(temperature=0.0, max_tokens=1)
        for chosen in sets:
            engine.generate([rag_prompt(engine, settings, texts, chosen, "What does source 1 say?")], one)
        timings[mode] = []
        for chosen in sets:
            prompt = rag_prompt(engine, settings, texts, chosen[1:] + chosen[:1], "Which rule does source 2 state?")
            started = time.perf_counter()
            engine.generate([prompt], one)
            timings[mode].append((time.perf_counter() - started) * 1e3)
    case = f"{num_prompts} prompts of 5 chunks, every chunk seen before (engine level)"
    return [BenchRow(SUITE, case, f"{name} TTFT, blend", pct(timings["blend"], q), "ms", peer="full prefill",
                     peer_value=pct(timings["exact"], q), higher_is_better=False)
            for q, name in ((0.5, "p50"), (0.99, "p99"))]  # fmt: skip


def rag_prompt(engine: LLMEngine, settings: Settings, texts: list[str], chosen: list[int], question: str
               ) -> PromptSegments:  # fmt: skip
    """The prompt the RAG layer would build for these chunks (numbered sources under the system prompt)."""
    blocks = [f"[{n}] pydoc://chunk-{i}\n{texts[i]}" for n, i in enumerate(chosen, 1)]
    messages = [{"role": "system", "content": settings.rag.system_prompt},
                {"role": "user", "content": user_message(question, blocks)}]  # fmt: skip
    text = engine.tokenizer.apply_chat_template(messages)
    return split_at_chunks(text, [(f"chunk-{i}", texts[i]) for i in chosen])


def stream_rows(results: list[tuple[float, list[float], int]]) -> list[BenchRow]:
    rows = []
    for budget, rates, num_bytes in results:
        case = f"stream of {STREAM_LENGTH} fresh questions, cache {budget:g} GiB"
        rows += [BenchRow(SUITE, case, f"hit rate, questions {i * STREAM_WINDOW + 1}-{(i + 1) * STREAM_WINDOW}",
                          rate, "") for i, rate in enumerate(rates)]  # fmt: skip
        rows.append(BenchRow(SUITE, case, "cache memory at the end", num_bytes / 2**20, "MiB",
                             higher_is_better=False))  # fmt: skip
    return rows


def run(quick: bool) -> tuple[list[BenchRow], str]:
    questions = split_questions(4 if quick else None)
    with tempfile.TemporaryDirectory(prefix="ragjet-kv-reuse-") as tmp:
        data_dir = Path(tmp)
        asyncio.run(ingest(data_dir))
        runs = {label: asyncio.run(run_config(data_dir, overrides, questions)) for label, overrides in CONFIGS.items()}
        stream = asyncio.run(stream_hit_rates(data_dir, (0.25, 1.0)))
    seen = seen_before_ttft(4 if quick else 30)
    base = runs["full prefill"]
    rows = [row for label, r in runs.items() if label != "full prefill" for row in latency_rows(label, r, base)]
    rows += [row for label, r in runs.items() if label != "full prefill" for row in quality_rows(label, r, base)]
    rows += seen + stream_rows(stream)
    blend = runs["blend"].stats
    notes = (
        f"Machine: {machine_description()}. Collection: the demo corpus; {len(questions[0])} warm-up questions (the "
        f"first of each pydoc-squad paragraph that has several), then {len(questions[1])} fresh questions by 1 client "
        f"and {len(questions[2])} by {CONCURRENCY} concurrent clients, {MAX_TOKENS} greedy tokens, answer cache off; "
        "each configuration in its own process state (engine, caches) after the same warm-up. Peer: full prefill "
        "(rag.context fixed, llm.chunk_reuse exact: prefix caching only) in the same run; ratio > 1 means faster or "
        f"better than it. Blend's chunk cache at the end: {blend.get('chunk_cache_entries', 0)} chunks, "
        f"{blend.get('chunk_cache_bytes', 0) / 2**20:.0f} MiB, hit rate "
        f"{blend.get('chunk_cache_hits', 0) / max(1, blend.get('chunk_cache_lookups', 0)):.2f}. The stream rows replay "
        f"retrieval (top 5) for {STREAM_LENGTH} distinct questions through the chunk cache class at two budgets, each "
        "chunk weighing its real K/V bytes."
    )
    return rows, notes
