"""The Ray Serve application: `ragjet serve --ray`, or `serve run ragjet.serve.rayserve.app:build_from_env`.

Two deployments. The ingress runs ragjet's own FastAPI app (REST, OpenAI routes, streaming, /metrics, /readyz) over
a pipeline whose generator is the generation deployment; it embeds questions and searches the collections itself,
because the prompt needs the hits and both take milliseconds, less than a hop would add. Its replicas are CPU
replicas that each open the collections (read-only with `serve.read_only`, the setting for replicas that another
process publishes to). The generation deployment holds the native engine, one per replica, with GPUs where the
cluster has them, routed by chunk affinity (`affinity.py`). Both are scaled by Ray on ongoing requests between their
`ray.num_*` and `ray.max_*` replica counts. With `ray.shard_collections`, each shard of those sharded collections
gets a third kind of deployment, a `ShardSearcher` replica (`shard_search.py`), and the ingress sends its per-shard
calls there instead of searching the shards itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from ragjet.config import LLMSettings, RaySettings, Settings, load_settings
from ragjet.rag.pipeline import RagPipeline
from ragjet.serve.app import create_app
from ragjet.serve.rayserve.affinity import ChunkAffinityRouter
from ragjet.serve.rayserve.generation import GenerationServer
from ragjet.serve.rayserve.remote_backend import RayGenerationBackend
from ragjet.serve.rayserve.shard_search import ShardSearcher, shard_runners
from ragjet.store.collection import collection_dir
from ragjet.store.sharded import LAYOUT, ShardLayout


@serve.ingress()
class RagIngress:
    """An ingress replica: ragjet's FastAPI app over a RagPipeline that generates through `generation`."""

    def __init__(
        self, settings: Settings, generation: DeploymentHandle, shards: dict[str, list[DeploymentHandle]] | None = None
    ):
        """`shards`: the `ShardSearcher` handles of each collection in `ray.shard_collections`, by shard number."""
        self.settings = settings
        self.generation = generation
        self.shards = shards or {}

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Ray Serve in the replica; the app's lifespan then loads the embedder and fetches the
        engine's tokenizer from a generation replica."""

        def connect(_: LLMSettings) -> RayGenerationBackend:
            return RayGenerationBackend.connect(self.generation, self.settings.ray)

        pipeline = RagPipeline(self.settings, backend_factory=connect)
        pipeline.collections().shard_runners.update(shard_runners(self.shards, self.settings.ray.shard_timeout_s))
        return create_app(self.settings, pipeline)


def build_app(settings: Settings) -> Application:
    """The bound application; `serve.run(build_app(settings), name=settings.ray.app_name)` starts it."""
    ray_settings = settings.ray
    router = ChunkAffinityRouter if ray_settings.affinity else None  # None: Ray's power of two choices
    generation = serve.deployment(
        name="generation",
        ray_actor_options={"num_cpus": ray_settings.generation_num_cpus, "num_gpus": generation_gpus(settings)},
        max_ongoing_requests=ray_settings.max_ongoing_requests,
        request_router_config={} if router is None else {"request_router_class": router_path(router)},
        health_check_period_s=2,
        **replica_count(ray_settings.num_generation_replicas, ray_settings.max_generation_replicas, ray_settings),
    )(GenerationServer)
    ingress = serve.deployment(
        name="ingress",
        ray_actor_options={"num_cpus": ray_settings.ingress_num_cpus},
        max_ongoing_requests=settings.rag.max_in_flight,
        **replica_count(ray_settings.num_ingress_replicas, ray_settings.max_ingress_replicas, ray_settings),
    )(RagIngress)
    shards = {name: shard_searchers(settings, name) for name in ray_settings.shard_collections}
    return ingress.bind(settings, generation.bind(settings.llm, ray_settings.stream_interval_ms / 1e3), shards)


def shard_searchers(settings: Settings, name: str) -> list[Application]:
    """One `ShardSearcher` deployment of one replica per shard of collection `name`, by shard number: a deployment
    each, because Serve routes a call to any replica of a deployment and each replica holds a different shard."""
    folder = collection_dir(settings.collections_dir, name)
    if not (folder / LAYOUT).is_file():
        raise ValueError(f"ray.shard_collections names {name!r}, which is not a sharded collection in {folder.parent}")
    return [
        serve.deployment(name=f"shard-{name}-{shard}", ray_actor_options={"num_cpus": settings.ray.shard_num_cpus},
                         num_replicas=1, health_check_period_s=2)(ShardSearcher)
        .bind(settings.collections_dir, name, shard, settings.index.device)
        for shard in range(ShardLayout.read(folder).num_shards)
    ]  # fmt: skip


def replica_count(floor: int, ceiling: int, ray_settings: RaySettings) -> dict[str, Any]:
    """A fixed number of replicas, or Ray's autoscaling on ongoing requests between two bounds."""
    if ceiling == floor:
        return {"num_replicas": floor}
    return {
        "autoscaling_config": {
            "min_replicas": floor,
            "initial_replicas": floor,
            "max_replicas": ceiling,
            "target_ongoing_requests": ray_settings.target_ongoing_requests,
        }
    }


def generation_gpus(settings: Settings) -> float:
    """`ray.generation_num_gpus`, or one GPU per tensor-parallel rank where the cluster has GPUs and llm.device
    does not keep generation on the CPU."""
    if settings.ray.generation_num_gpus is not None:
        return settings.ray.generation_num_gpus
    import ray

    has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    return float(settings.llm.tensor_parallel_size) if has_gpus and settings.llm.device != "cpu" else 0.0


def router_path(router: type) -> str:
    """The router by import path: each handle's process imports it, rather than unpickling a class sent along."""
    return f"{router.__module__}.{router.__qualname__}"


def build_from_env(args: dict[str, str]) -> Application:
    """For `serve run ragjet.serve.rayserve.app:build_from_env`: the settings from RAGJET_* and ragjet.toml
    (`args`, Serve's key=value pairs, are not read: ragjet's settings have one source of truth)."""
    del args
    return build_app(load_settings())
