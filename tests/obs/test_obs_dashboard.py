"""The Grafana dashboard queries only metrics that ragjet exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ragjet.obs.gauges import ENGINE_GAUGES
from ragjet.obs.metrics import Metrics

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "ragjet-dashboard.json"


def exported_names() -> set[str]:
    names = {metric.name for metric in Metrics().registry.collect()}
    names |= {f"ragjet_engine_{field}" for field in ENGINE_GAUGES}
    names |= {"ragjet_prefix_cache_hits", "ragjet_prefix_cache_queries"}
    names |= {"ragjet_gpu_memory_bytes", "ragjet_gpu_utilization_ratio"}
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"ragjet_[a-z_]+", target["expr"])
    }
    assert used and used <= exported_names(), used - exported_names()
    assert {"ragjet_stage_seconds", "ragjet_engine_num_used_blocks"} <= used
