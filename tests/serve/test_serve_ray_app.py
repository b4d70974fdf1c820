"""The Ray Serve application's shape from the `ray` settings, and `ragjet serve --ray` against a cluster that is not
there (no Ray instance is started)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is the optional extra ragjet[ray]")

from benchmarks.servers import free_port
from ragjet.config import ConfigError, load_settings
from ragjet.serve.rayserve.app import build_app


def deployments(**ray: object) -> dict[str, object]:
    """The ingress and generation deployments `build_app` binds, by name."""
    ingress = build_app(load_settings(llm={"device": "cpu"}, ray=ray))._bound_deployment
    generation = ingress.init_args[1]._bound_deployment
    return {d.name: d for d in (ingress, generation)}


def test_the_ingress_autoscales_between_its_replica_bounds() -> None:
    ingress = deployments(num_ingress_replicas=2, max_ingress_replicas=5, target_ongoing_requests=6)["ingress"]
    autoscaling = ingress._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.initial_replicas, autoscaling.max_replicas) == (2, 2, 5)
    assert autoscaling.target_ongoing_requests == 6


def test_equal_bounds_are_a_fixed_replica_count_and_the_stream_interval_reaches_generation() -> None:
    built = deployments(num_ingress_replicas=3, max_ingress_replicas=3, stream_interval_ms=20)
    assert built["ingress"].num_replicas == 3 and built["ingress"]._deployment_config.autoscaling_config is None
    assert built["generation"].init_args[1] == pytest.approx(0.02)


def test_an_ingress_ceiling_below_its_floor_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_ingress_replicas"):
        load_settings(ray={"num_ingress_replicas": 3, "max_ingress_replicas": 2})


def test_serve_on_an_unreachable_cluster_exits_2_with_one_line_within_the_timeout() -> None:
    env = {**os.environ, "RAGJET_RAY__CONNECT_TIMEOUT_S": "3", "RAGJET_CONFIG": "/nonexistent/ragjet.toml"}
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "from ragjet.cli import main; main()", "serve", "--ray", "--ray-address", address],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert time.monotonic() - started < 60  # the 3 s wait plus start-up, not Ray's endless retries
    ours = [line for line in result.stderr.splitlines() if "no Ray cluster answered" in line]
    assert ours == [f"no Ray cluster answered at {address} within 3 s (ray.connect_timeout_s)"]
