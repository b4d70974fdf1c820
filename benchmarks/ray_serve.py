"""Ray Serve path against in-process serving: the latency the deployment boundary adds, where it goes, and
throughput with 1 vs 2 generation replicas on this host.

Three servers, one after the other, as subprocesses over the same collection (the e2e suite's: the demo corpus,
MiniLM, SmolLM2-135M) and the same questions: `ragjet serve` (in-process), `ragjet serve --ray` with one generation
replica holding every CPU, and `ragjet serve --ray` with two replicas of half the CPUs each. Each runs the latency
pass (one client, distinct questions) and the throughput pass (closed-loop clients). The per-request stage timings
each server reports in its last stream chunk split the added latency into the pipeline's stages (prefill, as the
ingress sees it, includes the call to the replica and the first token's trip back) and the rest (the HTTP proxy hop,
the ingress's request handling, the last message's trip).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.e2e import SETTINGS, median_stages, prepare_collection, request_body
from benchmarks.load import LevelSummary, RequestResult, run_level
from benchmarks.report import BenchRow
from benchmarks.servers import free_port, ragjet_env, server_process
from ragjet.config import RaySettings

TITLE = "Ray Serve path (ingress + generation deployments) vs in-process serving"
SUITE = "ray_serve"
IN_PROCESS = "in-process `ragjet serve`"


@dataclass(frozen=True, slots=True)
class RayBenchConfig:
    max_tokens: int
    num_latency_requests: int  # one client, one at a time
    num_clients: int  # throughput pass
    num_throughput_requests: int
    timeout_s: float  # per pass

    @property
    def num_questions(self) -> int:
        return 1 + self.num_latency_requests + self.num_throughput_requests  # one warm-up first


QUICK = RayBenchConfig(max_tokens=4, num_latency_requests=3, num_clients=2, num_throughput_requests=4, timeout_s=180)
FULL = RayBenchConfig(max_tokens=16, num_latency_requests=24, num_clients=4, num_throughput_requests=24, timeout_s=600)


@dataclass(frozen=True, slots=True)
class ServerRun:
    latency: LevelSummary
    throughput: LevelSummary
    stages: dict[str, float]  # median ms per pipeline stage over the latency pass


def ray_settings(num_replicas: int) -> dict[str, dict[str, object]]:
    """The e2e settings served through Ray: the ingress takes no CPU reservation (it embeds and searches between
    decode steps, as in-process), the generation replicas split the host's CPUs (and torch threads) evenly."""
    cores = os.cpu_count() or 1
    ray: dict[str, object] = {
        "num_generation_replicas": num_replicas,
        "max_generation_replicas": num_replicas,
        "ingress_num_cpus": 0,
        "generation_num_cpus": max(1, cores // num_replicas),
    }
    return {**SETTINGS, "ray": ray}


def measure(argv: list[str], port: int, env: dict[str, str], log: Path, questions: list[str], cfg: RayBenchConfig,
            ) -> ServerRun:  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    endpoint = f"{url}/v1/chat/completions"

    def level(clients: int, batch: list[str]) -> tuple[LevelSummary, list[RequestResult]]:
        bodies = [request_body(q, cfg.max_tokens, cfg.timeout_s) for q in batch]
        return asyncio.run(run_level(endpoint, bodies, clients, cfg.timeout_s))

    with server_process(argv, url, log, env):
        level(1, questions[:1])  # warm-up
        latency, results = level(1, questions[1 : 1 + cfg.num_latency_requests])
        throughput, _ = level(cfg.num_clients, questions[1 + cfg.num_latency_requests :])
    return ServerRun(latency, throughput, median_stages(results, "ragjet"))


def serve_argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from ragjet.cli import main; main()", "serve", "--port", str(port),
            "--grpc-port", str(free_port()), *extra]  # fmt: skip


def run(quick: bool) -> tuple[list[BenchRow], str]:
    cfg = QUICK if quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragjet-ray-") as tmp:
        data_dir = Path(tmp)
        questions = asyncio.run(prepare_collection(data_dir, cfg.num_questions))
        runs: dict[str, ServerRun] = {}
        for name, argv_extra, settings in (
            (IN_PROCESS, (), SETTINGS),
            ("ray, 1 generation replica", ("--ray",), ray_settings(1)),
            ("ray, 2 generation replicas", ("--ray",), ray_settings(2)),
        ):
            port = free_port()
            log = data_dir / f"{len(runs)}-server.log"
            env = ragjet_env(settings, data_dir)
            runs[name] = measure(serve_argv(port, *argv_extra), port, env, log, questions, cfg)
    return rows(runs, cfg), notes(runs, cfg, time.perf_counter() - started)


def rows(runs: dict[str, ServerRun], cfg: RayBenchConfig) -> list[BenchRow]:
    base = runs[IN_PROCESS]
    out = []
    for name, run in runs.items():
        if name == IN_PROCESS:
            continue
        case = f"{name}, 1 client, max_tokens={cfg.max_tokens}"
        out += [
            BenchRow(SUITE, case, "latency p50", run.latency.p50_latency_s * 1e3, "ms", IN_PROCESS,
                     base.latency.p50_latency_s * 1e3, False),
            BenchRow(SUITE, case, "latency p99", run.latency.p99_latency_s * 1e3, "ms", IN_PROCESS,
                     base.latency.p99_latency_s * 1e3, False),
            BenchRow(SUITE, case, "TTFT p50", run.latency.p50_ttft_s * 1e3, "ms", IN_PROCESS,
                     base.latency.p50_ttft_s * 1e3, False),
            BenchRow(SUITE, f"{name}, {cfg.num_clients} clients", "throughput", run.throughput.qps, "req/s",
                     IN_PROCESS, base.throughput.qps, True),
        ]  # fmt: skip
    return out


def notes(runs: dict[str, ServerRun], cfg: RayBenchConfig, wall_s: float) -> str:
    base = runs[IN_PROCESS].latency
    added = ", ".join(
        f"{name}: {(r.latency.p50_latency_s - base.p50_latency_s) * 1e3:+.1f} ms latency, "
        f"{(r.latency.p50_ttft_s - base.p50_ttft_s) * 1e3:+.1f} ms TTFT"
        for name, r in runs.items()
        if name != IN_PROCESS
    )
    split = "; ".join(f"{name}: {where_it_goes(runs[IN_PROCESS], r)}" for name, r in runs.items() if name != IN_PROCESS)
    errors = ", ".join(f"{name}: {r.latency.num_errors + r.throughput.num_errors}" for name, r in runs.items())
    tokens = ", ".join(f"{name}: {r.latency.mean_tokens:.1f}" for name, r in runs.items())
    return "\n\n".join([
        f"Three servers as subprocesses on 127.0.0.1, one after the other, over the e2e suite's collection and "
        f"settings (demo corpus, all-MiniLM-L6-v2, SmolLM2-135M-Instruct Q4_1, dense top-4, greedy, "
        f"max_tokens={cfg.max_tokens}): {IN_PROCESS}; `ragjet serve --ray` on a local Ray instance with one "
        f"generation replica holding all {os.cpu_count()} CPUs (torch threads), then with two replicas of half "
        f"the CPUs each; the ingress replica (FastAPI app, embedding, retrieval) reserves no CPU. Routing by "
        f"chunk affinity; every question has a distinct best chunk. Each generation replica sends the tokens of "
        f"{RaySettings().stream_interval_ms:g} ms as one message (`ray.stream_interval_ms`; the first and "
        f"last token are never held).",
        f"Latency pass: {cfg.num_latency_requests} requests, one client, one at a time; throughput pass: "
        f"{cfg.num_throughput_requests} requests through {cfg.num_clients} closed-loop clients. One warm-up request "
        f"per server first. Added at p50 by the Ray path (minus in-process): {added}. Failed requests: {errors}. "
        f"Completion tokens per latency-pass request: {tokens}.",
        f"Where the added latency goes (median per-request stage timings of the latency pass, Ray minus "
        f"in-process; prefill is the ingress's view: call to the replica, prefill, first token back): {split}.",
        f"Suite wall time {wall_s / 60:.1f} min.",
    ])  # fmt: skip


def where_it_goes(base: ServerRun, run: ServerRun) -> str:
    """The added p50 latency split into pipeline stages and the rest (outside the pipeline's clock)."""
    diff = {stage: run.stages.get(stage, 0.0) - base.stages.get(stage, 0.0) for stage in ("prefill", "decode")}
    retrieval = sum(run.stages.get(s, 0.0) - base.stages.get(s, 0.0) for s in ("embed", "search", "rerank", "prompt"))
    added = (run.latency.p50_latency_s - base.latency.p50_latency_s) * 1e3
    rest = added - retrieval - sum(diff.values())
    return (
        f"prefill {diff['prefill']:+.1f} ms, decode {diff['decode']:+.1f} ms, embed + search + prompt "
        f"{retrieval:+.1f} ms, the rest {rest:+.1f} ms"
    )
