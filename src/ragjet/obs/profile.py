"""Profile analysis: per-stage latency percentiles, each stage's share of the time, the bottleneck and a hint.

A pure function over the pipeline's own `StageTimings` (as dicts, the ``*_ms`` keys of
`StageTimings.as_dict()` or the server's ``ragjet.timings_ms``): nothing here keeps a clock, so no
stage is ever timed twice. The share of a stage is its summed time over the summed request totals;
what no stage accounts for (scheduling, transport, Python overhead) is reported as ``other``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from ragjet.obs.metrics import STAGES as METRIC_STAGES

STAGES = tuple(s for s in METRIC_STAGES if s != "total")  # embed, search, rerank, prompt, queue, prefill, decode
PERCENTILES = (50, 90, 99)

HINTS = {
    "decode": "decode dominates: lower max_tokens, keep greedy sampling (prompt-lookup drafts apply to it) and "
    "llm.quantization=auto on CPU, or serve the LLM on a GPU",
    "prefill": "prefill dominates: rely on prefix caching, shorten the context (fewer top_k chunks) or chunk prefill",
    "embed": "query embedding dominates: batch queries (embed.max_wait_ms), run the embedder on GPU or in int8",
    "search": "vector search dominates: use an ANN index (index.kind=ivf_flat/ivf_pq/hnsw) or lower index.nprobe",
    "rerank": "reranking dominates: lower retrieve.coarse_k or turn off BM25 fusion (retrieve.use_bm25=false)",
    "prompt": "prompt assembly dominates: fewer or shorter chunks (top_k, chunk.max_tokens) to tokenize",
    "queue": "requests wait for the engine: raise llm.max_num_seqs (engine capacity) or send fewer concurrent users",
    "other": "time outside the measured stages dominates: transport, serialization or event-loop contention",
}


@dataclass(frozen=True, slots=True)
class StageStats:
    stage: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    share: float  # of the summed request totals, 0..1


@dataclass(frozen=True, slots=True)
class ProfileReport:
    num_requests: int
    concurrency: int
    wall_s: float
    requests_per_s: float
    stages: tuple[StageStats, ...]  # STAGES in pipeline order, then "other"
    total: StageStats
    bottleneck: str
    hint: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0–100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def stage_percentiles(timings: Sequence[Mapping[str, float]], stage: str) -> dict[str, float]:
    """{"p50": …, "p90": …, "p99": …} of ``<stage>_ms`` over requests (missing keys count as 0)."""
    values = [t.get(f"{stage}_ms", 0.0) for t in timings]
    return {f"p{q}": percentile(values, q) for q in PERCENTILES}


def analyze(timings: Sequence[Mapping[str, float]], wall_s: float, concurrency: int = 1) -> ProfileReport:
    """Summarise one workload's per-request timings; raises ValueError for an empty workload.

    The bottleneck is the stage (or ``other``) with the largest share of the total time.
    """
    if not timings:
        raise ValueError("no requests completed: nothing to profile")
    grand_total = sum(t.get("total_ms", 0.0) for t in timings)
    stages = [_stats(stage, [t.get(f"{stage}_ms", 0.0) for t in timings], grand_total) for stage in STAGES]
    others = [max(t.get("total_ms", 0.0) - sum(t.get(f"{s}_ms", 0.0) for s in STAGES), 0.0) for t in timings]
    stages.append(_stats("other", others, grand_total))
    bottleneck = max(stages, key=lambda s: s.share).stage
    return ProfileReport(
        num_requests=len(timings),
        concurrency=concurrency,
        wall_s=wall_s,
        requests_per_s=len(timings) / wall_s if wall_s > 0 else 0.0,
        stages=tuple(stages),
        total=_stats("total", [t.get("total_ms", 0.0) for t in timings], grand_total),
        bottleneck=bottleneck,
        hint=HINTS[bottleneck],
    )


def _stats(stage: str, values: list[float], grand_total: float) -> StageStats:
    p50, p90, p99 = (percentile(values, q) for q in PERCENTILES)
    share = sum(values) / grand_total if grand_total > 0 else 0.0
    return StageStats(stage, p50, p90, p99, mean(values), share)
