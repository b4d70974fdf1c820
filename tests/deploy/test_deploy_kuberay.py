"""The KubeRay variant (deploy/k8s/ray): the base's writer and claim kept, its plain serving objects removed, and a
RayService whose pod templates are valid for the pinned Kubernetes, whose Ray version is the one ragjet pins, whose
Serve config names an importable app builder and whose environment is settings ragjet accepts."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_deploy_k8s import K8S, KUBERNETES_VERSION, base_objects

RAY = K8S / "ray"
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def ray_objects() -> list[dict[str, Any]]:
    """kustomize build deploy/k8s/ray, for what it uses: the base, minus the `$patch: delete` objects, plus its own."""
    overlay = yaml.safe_load((RAY / "kustomization.yaml").read_text())
    deleted = {(d["kind"], d["metadata"]["name"]) for p in overlay["patches"]
               for d in yaml.safe_load_all((RAY / p["path"]).read_text()) if d.get("$patch") == "delete"}  # fmt: skip
    kept = [o for o in base_objects() if (o["kind"], o["metadata"]["name"]) not in deleted]
    own = [d for name in overlay["resources"] if name.endswith(".yaml")
           for d in yaml.safe_load_all((RAY / name).read_text()) if d]  # fmt: skip
    return kept + own


def ray_service() -> dict[str, Any]:
    (service,) = [o for o in ray_objects() if o["kind"] == "RayService"]
    return service


def pod_templates() -> dict[str, dict[str, Any]]:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    groups = {"head": cluster["headGroupSpec"]["template"]}
    groups |= {g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]}
    return groups


def test_the_plain_serving_objects_give_way_and_the_writer_stays() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in ray_objects()}
    assert ("Job", "ragjet-ingest") in kinds and ("PersistentVolumeClaim", "ragjet-published") in kinds
    assert not {k for k in kinds if k[0] in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget")}
    for obj in ray_objects():
        if obj["kind"] != "RayService":
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_ray_pod_template_is_valid_for_the_pinned_kubernetes() -> None:
    for group, template in pod_templates().items():
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}, "template": template}
        kubernetes_validate.validate(wrapped, KUBERNETES_VERSION, strict=True)


def test_the_ray_version_is_the_one_ragjet_pins() -> None:
    pinned = re.search(r'"ray\[serve\]==([\d.]+)"', PYPROJECT.read_text())
    assert pinned is not None
    assert ray_service()["spec"]["rayClusterConfig"]["rayVersion"] == pinned.group(1)


def test_the_serve_config_names_an_importable_app_builder() -> None:
    pytest.importorskip("ray.serve")
    (app,) = yaml.safe_load(ray_service()["spec"]["serveConfigV2"])["applications"]
    module, _, attribute = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_pods_have_resources_read_only_copies_and_gpus_where_generation_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragjet.config import load_settings

    for group, template in pod_templates().items():
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], group
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["readOnly"], f"{group} may write the published collections"
        (container,) = spec["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["RAGJET_SERVE__READ_ONLY"] == "true"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()  # the environment is settings ragjet accepts
        assert settings.serve.read_only and settings.ray.generation_num_gpus == 1.0
    gpu = pod_templates()["gpu-generation"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
