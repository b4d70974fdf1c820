"""The Kubernetes manifests: every object valid against a pinned Kubernetes version's schemas (kubernetes-validate,
strict: no unknown fields), the GPU overlay valid once patched in, and the invariants a working deployment needs
(one writer; no ReadWriteOnce claim shared by replicas; probes, resources; the serving replicas read-only)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def base_objects() -> list[dict[str, Any]]:
    files = kustomization(K8S / "base")["resources"]
    return [doc for name in files for doc in yaml.safe_load_all((K8S / "base" / name).read_text()) if doc]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kubectl does it for what the overlay uses: maps by key, containers by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: merge(base[k], v) if k in base else v for k, v in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base):
        named = {x["name"]: x for x in base}
        patched = [merge(named[p["name"]], p) if p["name"] in named else p for p in patch]
        return patched + [x for x in base if x["name"] not in {p["name"] for p in patch}]
    return patch


def gpu_objects() -> list[dict[str, Any]]:
    overlay = kustomization(K8S / "overlays" / "gpu")
    objects = copy.deepcopy(base_objects())
    for entry in overlay["patches"]:
        patch = yaml.safe_load((K8S / "overlays" / "gpu" / entry["path"]).read_text())
        for i, obj in enumerate(objects):
            if (obj["kind"], obj["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"]):
                objects[i] = merge(obj, patch)
    return objects


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("variant", ["base", "nvidia-overlay"])  # ("gpu" would mark it as needing a GPU here)
def test_every_object_is_valid_for_the_pinned_kubernetes(variant: str) -> None:
    objects = base_objects() if variant == "base" else gpu_objects()
    assert {o["kind"] for o in objects} >= {"Deployment", "Job", "Service", "PersistentVolumeClaim",
                                             "HorizontalPodAutoscaler", "PodDisruptionBudget"}  # fmt: skip
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_no_read_write_once_claim_is_shared_and_only_the_job_writes() -> None:
    objects = base_objects()
    claims = {o["metadata"]["name"]: o["spec"]["accessModes"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for obj in (o for o in objects if o["kind"] in WORKLOADS):
        replicas = obj["spec"].get("replicas", 1) if obj["kind"] != "Job" else 1
        spec = pod_spec(obj)
        mounts = {m["name"]: m for c in spec.get("initContainers", []) + spec["containers"]
                  for m in c.get("volumeMounts", [])}  # fmt: skip
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim is None:
                continue
            modes = claims.get(claim["claimName"], ["ReadOnlyMany"])  # the corpus: yours, read-only
            assert replicas == 1 or "ReadWriteOnce" not in modes, f"{obj['metadata']['name']} shares an RWO claim"
            if obj["kind"] != "Job":  # serving replicas only read the published collections
                assert claim.get("readOnly") and mounts[volume["name"]].get("readOnly")


def test_serving_pods_have_probes_resources_and_are_read_only() -> None:
    for variant in (base_objects(), gpu_objects()):
        (serve,) = [o for o in variant if o["kind"] == "Deployment"]
        (container,) = pod_spec(serve)["containers"]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 180  # model load + a kernel build
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["RAGJET_SERVE__READ_ONLY"] == "true"
    (gpu,) = [o for o in gpu_objects() if o["kind"] == "Deployment"]
    assert pod_spec(gpu)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    hpa = next(o for o in base_objects() if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ragjet"
    pods_metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert "ragjet_engine_num_waiting" in pods_metrics


async def test_a_read_only_server_refuses_writes_with_403(tmp_path: Path) -> None:
    from ragjet.config import load_settings
    from ragjet.rag.pipeline import RagPipeline
    from ragjet.serve.contract import PERMISSION_DENIED, classify

    pipeline = RagPipeline(load_settings(data_dir=tmp_path, serve={"read_only": True}))
    with pytest.raises(PermissionError, match="read-only") as refused:
        await pipeline.create_collection("notes")
    error = classify(refused.value)
    assert error is not None and error.kind is PERMISSION_DENIED and error.kind.http_status == 403
    assert await pipeline.list_collections() == []  # reads still work
