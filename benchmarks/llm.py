"""LLM generation benchmark: the ragjet engine against HF transformers `generate` and llama.cpp.

Same model (SmolLM2-135M-Instruct, the packaged Q4_1 GGUF, dequantised for ragjet and transformers),
same ~300-token RAG-style prompts (Python reference passages plus a question, chat-templated), greedy
decoding of a fixed number of tokens with end-of-sequence ignored, all measured in one run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.llm_peers import (
    Runner,
    Timing,
    llama_cpp_runner,
    run_sequentially,
    transformers_greedy_tokens,
    transformers_model_from_gguf,
    transformers_runner,
)
from benchmarks.llm_prompts import PromptTokenizer, rag_prompts, shared_prefix_pairs
from benchmarks.report import BenchRow
from ragjet.hardware import cpu_policy, dtype_name
from ragjet.llm.engine.async_engine import AsyncLLMEngine
from ragjet.llm.kernels import cpu as cpu_kernels
from ragjet.llm.sampling_params import SamplingParams
from ragjet.models import resolve_model

TITLE = "LLM generation (ragjet engine vs HF transformers and llama.cpp)"
SUITE = "llm"
MODEL = "SmolLM2-135M-Instruct"
HF, LLAMA_CPP = "HF transformers", "llama.cpp"


@dataclass(frozen=True, slots=True)
class LLMBenchConfig:
    num_new_tokens: int
    concurrency: tuple[int, ...]  # requests submitted at once (1: single requests, one after another)
    num_single_requests: int = 3  # batch-1 figures are medians over this many requests
    num_prompt_tokens: int = 300
    num_prefix_pairs: int = 3  # (miss, hit) pairs for the prefix-cache TTFT
    num_long_prompts: int = 3  # cold ~500-token RAG prompts: the TTFT a first question pays
    num_long_prompt_tokens: int = 500


QUICK = LLMBenchConfig(
    num_new_tokens=16, concurrency=(1, 4), num_single_requests=1, num_prefix_pairs=1, num_long_prompts=1
)
FULL = LLMBenchConfig(num_new_tokens=128, concurrency=(1, 4, 16))
CUDA_CONCURRENCY = (1, 16, 64)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a system achieved on one set of requests."""

    aggregate_tok_s: float
    p50_latency_s: float
    p99_latency_s: float
    ttft_s: float  # median
    decode_tok_s: float  # per request, first → last token, median

    @classmethod
    def of(cls, timings: list[Timing], wall_s: float) -> LoadResult:
        latencies = sorted(t.latency_s for t in timings)
        decode = [(t.num_tokens - 1) / (t.latency_s - t.ttft_s) for t in timings if t.num_tokens > 1]
        return cls(
            aggregate_tok_s=sum(t.num_tokens for t in timings) / wall_s,
            p50_latency_s=percentile(latencies, 50),
            p99_latency_s=percentile(latencies, 99),
            ttft_s=statistics.median(t.ttft_s for t in timings),
            decode_tok_s=statistics.median(decode) if decode else 0.0,
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class PromptSets:
    """Distinct prompts for every measurement, so that no system gets a prefix-cache hit it did not earn."""

    warmup: list[int]
    by_concurrency: dict[int, list[list[int]]]
    prefix_pairs: list[tuple[list[int], list[int]]]
    long: list[list[int]]  # cold long prompts, each on a passage no other prompt uses

    @classmethod
    def build(cls, tokenizer: PromptTokenizer, cfg: LLMBenchConfig, concurrency: tuple[int, ...]) -> PromptSets:
        sizes = [cfg.num_single_requests if n == 1 else n for n in concurrency]
        prompts = rag_prompts(tokenizer, 1 + sum(sizes), cfg.num_prompt_tokens)
        sets, start = {}, 1
        for n, size in zip(concurrency, sizes, strict=True):
            sets[n] = prompts[start : start + size]
            start += size
        pairs = shared_prefix_pairs(tokenizer, cfg.num_prefix_pairs, cfg.num_prompt_tokens, offset=start)
        offset = start + cfg.num_prefix_pairs
        long = rag_prompts(tokenizer, cfg.num_long_prompts, cfg.num_long_prompt_tokens, offset=offset)
        return cls(prompts[0], sets, pairs, long)


# --- measuring -----------------------------------------------------------------------------------


def measure(
    run_one: Callable[[list[int]], Timing],
    run_many: Callable[[list[list[int]]], list[Timing]],
    prompts: PromptSets,
) -> dict[int, LoadResult]:
    """Concurrency 1: single requests one after another, each on its own clock; N: all submitted at once."""
    run_one(prompts.warmup)
    results = {}
    for n, batch in prompts.by_concurrency.items():
        started = time.perf_counter()
        timings = [run_one(p) for p in batch] if n == 1 else run_many(batch)
        wall_s = sum(t.latency_s for t in timings) if n == 1 else time.perf_counter() - started
        results[n] = LoadResult.of(timings, wall_s)
    return results


def measure_peer(runner: Runner, prompts: PromptSets, num_new_tokens: int) -> dict[int, LoadResult]:
    return measure(
        lambda p: runner(p, num_new_tokens), lambda ps: run_sequentially(runner, ps, num_new_tokens), prompts
    )


async def _stream_timed(engine: AsyncLLMEngine, prompt: list[int], params: SamplingParams, t0: float) -> Timing:
    first_at, num_tokens = None, 0
    async for out in engine.stream(prompt, params):
        if out.new_token_ids and first_at is None:
            first_at = time.perf_counter()
        num_tokens += len(out.new_token_ids)
    ended = time.perf_counter()
    return Timing((first_at or ended) - t0, ended - t0, num_tokens)


async def _all_at_once(engine: AsyncLLMEngine, prompts: list[list[int]], params: SamplingParams) -> list[Timing]:
    t0 = time.perf_counter()
    return list(await asyncio.gather(*(_stream_timed(engine, p, params, t0) for p in prompts)))


def native_runner(engine: AsyncLLMEngine) -> Runner:
    """One request at a time through the engine, on its own clock (the peers' Runner shape)."""

    def run(prompt: list[int], num_new_tokens: int) -> Timing:
        return asyncio.run(_stream_timed(engine, prompt, greedy(num_new_tokens), time.perf_counter()))

    return run


def measure_native(engine: AsyncLLMEngine, prompts: PromptSets, num_new_tokens: int) -> dict[int, LoadResult]:
    params = greedy(num_new_tokens)
    return measure(
        lambda p: asyncio.run(_stream_timed(engine, p, params, time.perf_counter())),
        lambda ps: asyncio.run(_all_at_once(engine, ps, params)),
        prompts,
    )


def median_ttft_s(runner: Runner, prompts: list[list[int]]) -> float:
    """Median time to the first token of prompts no system has seen (beyond the shared system prompt)."""
    return statistics.median(runner(p, 1).ttft_s for p in prompts)


def measure_prefix_ttft(engine: AsyncLLMEngine, pairs: list[tuple[list[int], list[int]]]) -> tuple[float, float]:
    """Median TTFT (miss, hit): the first prompt of a pair is new to the cache, the second shares its prefix."""
    params = greedy(1)
    misses, hits = [], []
    for first, second in pairs:
        misses.append(asyncio.run(_stream_timed(engine, first, params, time.perf_counter())).ttft_s)
        hits.append(asyncio.run(_stream_timed(engine, second, params, time.perf_counter())).ttft_s)
    return statistics.median(misses), statistics.median(hits)


def greedy(num_new_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=num_new_tokens, ignore_eos=True)


# --- reporting -----------------------------------------------------------------------------------


MetricSpec = tuple[str, str, bool, Callable[[LoadResult], float]]  # name, unit, higher is better, value
BATCH1_METRICS: tuple[MetricSpec, ...] = (
    ("TTFT", "ms", False, lambda r: r.ttft_s * 1e3),
    ("decode", "tok/s", True, lambda r: r.decode_tok_s),
)
LOAD_METRICS: tuple[MetricSpec, ...] = (
    ("aggregate", "tok/s", True, lambda r: r.aggregate_tok_s),
    ("p50 latency", "s", False, lambda r: r.p50_latency_s),
    ("p99 latency", "s", False, lambda r: r.p99_latency_s),
)


def result_rows(prefix: str, ours: dict[int, LoadResult], peer: str, theirs: dict[int, LoadResult]) -> list[BenchRow]:
    """Rows for every concurrency level and metric, with the peer's figure beside ours when there is one."""
    rows = []
    for n, result in ours.items():
        case, metrics = (f"{prefix}1 request", BATCH1_METRICS) if n == 1 else (f"{prefix}{n} concurrent", LOAD_METRICS)
        other = theirs.get(n)
        for metric, unit, higher_is_better, value in metrics:
            peer_value = None if other is None else value(other)
            rows.append(BenchRow(SUITE, case, metric, value(result), unit, peer, peer_value, higher_is_better))
    return rows


def target_notes(ours: dict[int, LoadResult], peers: dict[str, dict[int, LoadResult]], miss: float, hit: float) -> str:
    """One line per published target: the measured ratio and whether it is met."""
    top = max(ours)
    checks = [("prefix-cache hit TTFT ≥ 3× faster than a miss", miss / hit, 3.0)]
    if HF in peers:
        checks.append((f"batch-1 decode ≥ 3× {HF}", ours[1].decode_tok_s / peers[HF][1].decode_tok_s, 3.0))
        checks.append(
            (f"aggregate at {top} ≥ 10× {HF}", ours[top].aggregate_tok_s / peers[HF][top].aggregate_tok_s, 10.0)
        )
    if LLAMA_CPP in peers:
        ratio = ours[top].aggregate_tok_s / peers[LLAMA_CPP][top].aggregate_tok_s
        checks.append((f"aggregate at {top} ≥ {LLAMA_CPP}", ratio, 1.0))
    return "; ".join(f"{name}: {ratio:.2f}× ({'met' if ratio >= goal else 'NOT met'})" for name, ratio, goal in checks)


def long_prompt_targets(ttft_s: dict[str, float]) -> str:
    """The cold long-prompt TTFT targets: at most 1.0 s, and no slower than llama.cpp."""
    ours = ttft_s["ragjet"]
    checks = [f"cold long-prompt TTFT ≤ 1.0 s: {ours:.2f} s ({'met' if ours <= 1 else 'NOT met'})"]
    if LLAMA_CPP in ttft_s:
        ratio = ttft_s[LLAMA_CPP] / ours
        checks.append(f"cold long-prompt TTFT ≤ {LLAMA_CPP}: {ratio:.2f}× ({'met' if ratio >= 1 else 'NOT met'})")
    return "; ".join(checks)


async def _greedy_tokens(engine: AsyncLLMEngine, prompt: list[int], num_new_tokens: int) -> list[int]:
    tokens: list[int] = []
    async for out in engine.stream(prompt, greedy(num_new_tokens)):
        tokens.extend(out.new_token_ids)
    return tokens


def run(quick: bool) -> tuple[list[BenchRow], str]:
    cfg = QUICK if quick else FULL
    gguf = resolve_model(MODEL)
    num_threads = torch.get_num_threads()
    engine, tokenizer = start_engine("cpu", max(cfg.concurrency))
    prompts = PromptSets.build(tokenizer, cfg, cfg.concurrency)
    ours = measure_native(engine, prompts, cfg.num_new_tokens)
    miss, hit = measure_prefix_ttft(engine, prompts.prefix_pairs)
    long_ttft = {"ragjet": median_ttft_s(native_runner(engine), prompts.long)}
    our_tokens = asyncio.run(_greedy_tokens(engine, prompts.warmup, cfg.num_new_tokens))
    stats = engine.stats()
    asyncio.run(engine.shutdown())

    peers: dict[str, dict[int, LoadResult]] = {}
    hf_model = transformers_model_from_gguf(gguf, torch.float32, "cpu")
    hf_tokens = transformers_greedy_tokens(hf_model, prompts.warmup, cfg.num_new_tokens)
    hf_runner = transformers_runner(hf_model)
    peers[HF] = measure_peer(hf_runner, prompts, cfg.num_new_tokens)
    long_ttft[HF] = median_ttft_s(hf_runner, prompts.long)
    del hf_model, hf_runner
    llama, llama_note = llama_cpp_runner(gguf, n_ctx=2048, n_threads=num_threads)
    if llama is not None:
        peers[LLAMA_CPP] = measure_peer(llama, prompts, cfg.num_new_tokens)
        long_ttft[LLAMA_CPP] = median_ttft_s(llama, prompts.long)

    rows = [row for peer, theirs in peers.items() for row in result_rows("", ours, peer, theirs)]
    prefix_case = f"prefix-cache hit, ~{cfg.num_prompt_tokens}-token prompt"
    rows.append(BenchRow(SUITE, prefix_case, "TTFT", hit * 1e3, "ms", "ragjet, cache miss", miss * 1e3, False))
    long_case = f"cold ~{statistics.median(map(len, prompts.long)):.0f}-token RAG prompt"
    for peer in (HF, LLAMA_CPP):
        if peer in long_ttft:
            rows.append(BenchRow(SUITE, long_case, "TTFT", long_ttft["ragjet"] * 1e3, "ms", peer,
                                 long_ttft[peer] * 1e3, False))  # fmt: skip
    llama_kernels = " on the GGUF itself (Q4_1, quantized kernels)" if llama is not None else ""
    policy = cpu_policy()
    dense = f"{dtype_name(policy.dense_dtype)}{' (oneDNN-prepacked)' if policy.prepack_dense else ''}"
    notes = [
        f"CPU at the {policy.isa} level, {num_threads} torch threads: ragjet as its CPU default serves this Q4_1 "
        "file: int4 weight-only layer linears (groups of 32, the file's own grid) and an int8 LM head for steps of "
        f"few rows, their dense {dense} copies for steps of 10+ rows (LM head 5+), "
        f"{dtype_name(policy.llm_dtype)} activations, the fused CPU kernels "
        f"({cpu_kernels.status() if cpu_kernels.loaded() else 'NOT loaded: torch paths'}); "
        f"transformers float32; {llama_note}{llama_kernels}. "
        f"Prompts ~{cfg.num_prompt_tokens} tokens, {cfg.num_new_tokens} greedy new tokens (end-of-sequence ignored). "
        "Peers serve one request at a time: N concurrent = N "
        "queued requests, latency counted from submission; ragjet batches them continuously.",
        f"Greedy tokens identical to transformers for {_agreement(our_tokens, hf_tokens)} of {cfg.num_new_tokens}.",
        f"Prompt-lookup speculative decoding (decode steps of at most 4 sequences): {stats.num_draft_tokens} "
        f"draft tokens scored, {stats.num_accepted_draft_tokens / max(1, stats.num_draft_tokens):.0%} accepted.",
        "Targets: " + target_notes(ours, peers, miss, hit) + "; " + long_prompt_targets(long_ttft) + ".",
    ]
    if torch.cuda.is_available():
        cuda_rows, cuda_note = measure_cuda(cfg)
        rows += cuda_rows
        notes.append(cuda_note)
    return rows, "\n\n".join(notes)


def _agreement(ours: list[int], theirs: list[int]) -> int:
    """Leading tokens both produced (after a first difference the continuations legitimately diverge)."""
    count = 0
    for a, b in zip(ours, theirs, strict=False):
        if a != b:
            break
        count += 1
    return count


def measure_cuda(cfg: LLMBenchConfig) -> tuple[list[BenchRow], str]:
    """bf16 on the GPU at 1/16/64 concurrent requests (ragjet only)."""
    engine, tokenizer = start_engine("cuda", max(CUDA_CONCURRENCY))
    prompts = PromptSets.build(tokenizer, cfg, CUDA_CONCURRENCY)
    results = measure_native(engine, prompts, cfg.num_new_tokens)
    asyncio.run(engine.shutdown())
    rows = result_rows("CUDA bf16, ", results, "", {})
    return rows, f"CUDA rows: bf16 on {torch.cuda.get_device_name(0)}, ragjet only."


def start_engine(device: str, max_num_seqs: int) -> tuple[AsyncLLMEngine, PromptTokenizer]:
    """The engine `ragjet serve` builds on `device` with default settings (on CPU: int4 from this Q4_1 file,
    the policy's dense prefill; on CUDA: bf16), so the bench measures what users run."""
    from ragjet.config import LLMSettings
    from ragjet.llm.backends.native import build_engine

    settings = LLMSettings(model=MODEL, device=device, max_num_seqs=max_num_seqs, max_model_len=2048)
    return build_engine(settings, torch.device(device))
