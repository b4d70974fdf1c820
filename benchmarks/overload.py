"""A bounded overload test: offer a ragjet server several times the rate it can sustain and check that it
sheds the excess (429 + Retry-After) instead of falling over, that the requests it accepts meet their
deadline, and that its memory stays flat.

Three phases against one server on localhost, each bounded in requests and in time:
  1. calibrate: `calibration_clients` closed-loop clients measure the sustainable rate (answers/s);
  2. and 3. overload, twice: an open-loop generator sends requests at `multiple` × that rate (arrivals
     on a fixed schedule, whatever the server does) for `duration_s` or `max_requests`, whichever ends
     first; the server's RSS is read before, during and after each round.
The second round shows whether memory keeps growing under sustained overload (the first one also warms
allocators and caches). Run it: `python -m benchmarks.overload --url http://127.0.0.1:8000 --pid PID`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.servers import CLIENT_KEEPALIVE_S, free_port, ragjet_env
from benchmarks.servers import server_process as run_server

COMPLETIONS = "/v1/chat/completions"
DEMO_QUESTIONS = ("What does the with statement do?", "How are exceptions raised?",
                  "What is a generator expression?", "How does import find modules?")  # fmt: skip
DEADLINE_SLACK_S = 0.5  # HTTP and JSON overhead on top of the pipeline's own deadline


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    questions: tuple[str, ...]
    collection: str | None = None  # None: the server's default collection
    top_k: int | None = None  # sources per prompt; None: the server's retrieve.top_k
    max_tokens: int = 16
    deadline_s: float = 5.0  # every request's budget (`ragjet.deadline_s`)
    calibration_clients: int = 8  # as many as the engine decodes together (llm.max_num_seqs)
    calibration_requests: int = 24
    multiple: float = 4.0  # offered rate = multiple × sustainable rate
    duration_s: float = 10.0  # one overload round's sending window
    max_requests: int = 400  # one round sends at most this many
    round_timeout_s: float = 60.0  # a round stops by itself after this long, finished or not
    rounds: int = 2

    def __post_init__(self) -> None:
        if not self.questions:
            raise ValueError("OverloadConfig needs at least one question")
        if self.multiple <= 0 or self.duration_s <= 0 or self.max_requests < 1 or self.calibration_requests < 4:
            raise ValueError("multiple and duration_s must be positive, max_requests >= 1, calibration_requests >= 4")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int  # HTTP status; 0 when the request failed without one (connection error, client timeout)
    latency_s: float
    degraded: str | None = None
    retry_after: str | None = None
    finish_reason: str | None = None
    pipeline_s: float = 0.0  # the server's clock of the answer (timings_ms.total_ms): from arrival in the app
    error: str | None = None  # what went wrong, for a status other than 200, 429 and 504


@dataclass(slots=True)
class RoundReport:
    offered_rps: float
    num_sent: int
    num_served: int  # 200
    num_rejected: int  # 429
    num_timed_out: int  # 504: accepted, but the deadline passed before generation could start
    num_errors: int  # anything else, including no status at all
    errors: list[str]  # up to five distinct errors behind num_errors (status or exception, and its message)
    served_rps: float  # answers per second, from the first send to the last answer
    p50_latency_s: float  # over served requests
    p99_latency_s: float
    max_latency_s: float
    p99_pipeline_s: float  # the same requests by the server's clock (arrival in the app → answer built)
    num_late: int  # served later than deadline_s + DEADLINE_SLACK_S, by the client's clock
    num_late_in_server: int  # the same by the server's clock (arrival in the app → answer), which ragjet controls
    num_cut_off: int  # served, but generation was cut off at the deadline (finish_reason "timeout")
    num_extractive: int  # of those, answered with the top passages because no word had been generated
    retry_after: list[str]  # distinct Retry-After values of the 429s
    wall_s: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float


@dataclass(slots=True)
class OverloadReport:
    sustainable_rps: float
    calibration_p50_s: float
    rounds: list[RoundReport] = field(default_factory=list)
    alive_after: bool = False  # /healthz answered 200 once the load was over

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MiB, from /proc (0 where /proc is not available)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, round(q / 100 * len(ordered)))) - 1]


def request_body(cfg: OverloadConfig, i: int) -> dict[str, Any]:
    options: dict[str, Any] = {"deadline_s": cfg.deadline_s}
    if cfg.collection is not None:
        options["collection"] = cfg.collection
    if cfg.top_k is not None:
        options["top_k"] = cfg.top_k
    question = cfg.questions[i % len(cfg.questions)]
    return {"messages": [{"role": "user", "content": question}], "max_tokens": cfg.max_tokens,
            "temperature": 0.0, "ragjet": options}  # fmt: skip


async def send_one(client: httpx.AsyncClient, body: dict[str, Any], timeout_s: float) -> Outcome:
    started = time.perf_counter()
    try:
        response = await client.post(COMPLETIONS, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Outcome(0, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    if response.status_code not in (200, 429, 504):
        return Outcome(response.status_code, latency, error=f"HTTP {response.status_code}: {response.text[:200]}")
    body = response.json() if response.status_code == 200 else {}
    info = body.get("ragjet") or {}
    finish = (body.get("choices") or [{}])[0].get("finish_reason")
    pipeline_s = float(info.get("timings_ms", {}).get("total_ms", 0.0)) / 1e3
    retry_after = response.headers.get("retry-after")
    return Outcome(response.status_code, latency, info.get("degraded"), retry_after, finish, pipeline_s)


async def calibrate(client: httpx.AsyncClient, cfg: OverloadConfig) -> tuple[float, float]:
    """(answers per second, p50 latency) of `calibration_clients` closed-loop clients: what the server sustains."""
    queue = list(range(cfg.calibration_requests))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        while queue:
            outcomes.append(await send_one(client, request_body(cfg, queue.pop()), cfg.round_timeout_s))

    started = time.perf_counter()
    async with asyncio.timeout(cfg.round_timeout_s):
        await asyncio.gather(*(worker() for _ in range(cfg.calibration_clients)))
    served = [o.latency_s for o in outcomes if o.status == 200]
    if len(served) < len(outcomes) // 2:
        statuses = sorted({o.status for o in outcomes})
        raise RuntimeError(f"calibration failed: {len(served)} of {len(outcomes)} answered (statuses {statuses})")
    return len(served) / (time.perf_counter() - started), percentile(served, 50)


async def overload_round(
    client: httpx.AsyncClient, cfg: OverloadConfig, rate: float, rss: Callable[[], float]
) -> RoundReport:
    """Open loop at `rate` requests/s: request i leaves at start + i / rate, whether or not earlier ones finished."""
    num = min(cfg.max_requests, max(1, int(rate * cfg.duration_s)))
    rss_before, peak = rss(), [0.0]
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            await asyncio.sleep(0.25)

    async def scheduled(i: int, start: float) -> Outcome:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        return await send_one(client, request_body(cfg, i), cfg.deadline_s + 30)

    sampler = asyncio.create_task(sample_rss())
    start = time.perf_counter()
    tasks = [asyncio.create_task(scheduled(i, start)) for i in range(num)]
    done, pending = await asyncio.wait(tasks, timeout=cfg.round_timeout_s)
    for task in pending:
        task.cancel()
    wall = time.perf_counter() - start
    stop.set()
    await sampler
    outcomes = [t.result() for t in done] + [Outcome(0, wall, error="unanswered when the round ended") for _ in pending]
    served = [o for o in outcomes if o.status == 200]
    latencies = [o.latency_s for o in served]
    last_answer = max(latencies, default=0.0)
    return RoundReport(
        offered_rps=rate,
        num_sent=num,
        num_served=len(served),
        num_rejected=sum(o.status == 429 for o in outcomes),
        num_timed_out=sum(o.status == 504 for o in outcomes),
        num_errors=sum(o.status not in (200, 429, 504) for o in outcomes),
        errors=sorted({o.error for o in outcomes if o.error})[:5],
        served_rps=len(served) / wall if wall > 0 and last_answer > 0 else 0.0,
        p50_latency_s=percentile(latencies, 50),
        p99_latency_s=percentile(latencies, 99),
        max_latency_s=last_answer,
        p99_pipeline_s=percentile([o.pipeline_s for o in served], 99),
        num_late=sum(o.latency_s > cfg.deadline_s + DEADLINE_SLACK_S for o in served),
        num_late_in_server=sum(o.pipeline_s > cfg.deadline_s + DEADLINE_SLACK_S for o in served),
        num_cut_off=sum(o.finish_reason == "timeout" for o in served),
        num_extractive=sum((o.degraded or "").startswith("generator timeout") for o in served),
        retry_after=sorted({o.retry_after for o in outcomes if o.status == 429 and o.retry_after}),
        wall_s=wall,
        rss_before_mb=rss_before,
        rss_peak_mb=max(peak[0], rss_before),
        rss_after_mb=rss(),
    )


async def run_overload(
    url: str, cfg: OverloadConfig, pid: int | None = None, api_key: str | None = None
) -> OverloadReport:
    """Calibrate, then `cfg.rounds` overload rounds at `cfg.multiple` × the sustainable rate; RSS of `pid`."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=CLIENT_KEEPALIVE_S)
    rss = (lambda: rss_mb(pid)) if pid is not None else (lambda: 0.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        sustainable, p50 = await calibrate(client, cfg)
        report = OverloadReport(sustainable, p50)
        for _ in range(cfg.rounds):
            report.rounds.append(await overload_round(client, cfg, cfg.multiple * sustainable, rss))
        try:
            report.alive_after = (await client.get("/healthz", timeout=10)).status_code == 200
        except httpx.HTTPError:
            report.alive_after = False
    return report


@dataclass(frozen=True, slots=True)
class ServerProcess:
    url: str
    grpc_target: str
    process: subprocess.Popen[bytes]


@contextmanager
def server_process(settings: dict[str, dict[str, object]], data_dir: Path) -> Iterator[ServerProcess]:
    """`ragjet serve` in a subprocess on free localhost ports, configured by RAGJET_* variables from
    `settings` ({section: {field: value}}); yielded once /readyz answers, stopped gracefully afterwards."""
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-c", "from ragjet.cli import main; main()", "serve",
               "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with run_server(command, url, data_dir / "ragjet-serve.log", ragjet_env(settings, data_dir)) as process:
        yield ServerProcess(url, f"127.0.0.1:{grpc_port}", process)


def upload(url: str, collection: str, files: list[Path]) -> None:
    parts = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in files]
    response = httpx.post(f"{url}/v1/collections/{collection}/documents", files=parts, timeout=600)
    response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description="Bounded overload test of a running ragjet server (localhost).")
    parser.add_argument("--url", default=None, help="a running server; default: start one (--model, --corpus)")
    parser.add_argument("--pid", type=int, default=None, help="the running server's process id, to read its RSS")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="LLM of the server this test starts")
    parser.add_argument("--corpus", type=Path, default=None, help="markdown files uploaded to the started server")
    parser.add_argument("--collection", default=None)
    parser.add_argument("--question", action="append", default=None, help="repeatable; default: a few demo ones")
    parser.add_argument("--multiple", type=float, default=4.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--deadline", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=None, help="sources per prompt (default: the server's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    questions = tuple(args.question or DEMO_QUESTIONS)
    cfg = OverloadConfig(questions, collection=args.collection, top_k=args.top_k, max_tokens=args.max_tokens,
                         deadline_s=args.deadline, multiple=args.multiple, duration_s=args.duration,
                         round_timeout_s=args.duration + args.deadline + 60)  # fmt: skip
    if args.url is not None:
        report = asyncio.run(run_overload(args.url, cfg, args.pid))
    else:
        if args.corpus is None:
            parser.error("--corpus is needed when no --url is given")
        settings: dict[str, dict[str, object]] = {
            "llm": {"model": args.model, "device": "cpu"}, "embed": {"device": "cpu"}, "index": {"device": "cpu"},
            "rag": {"answer_cache_entries": 0},  # questions repeat: each must be generated to load the engine
            "serve": {"default_collection": "overload", "auth_enabled": False, "rate_limit_per_s": 1e6,
                      "rate_limit_burst": 1_000_000, "log_level": "warning"},
        }  # fmt: skip
        with (
            tempfile.TemporaryDirectory(prefix="ragjet-overload-") as data_dir,
            server_process(settings, Path(data_dir)) as server,
        ):
            upload(server.url, "overload", sorted(args.corpus.glob("*.md")))
            report = asyncio.run(run_overload(server.url, cfg, server.process.pid))
    text = json.dumps(report.to_json(), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
