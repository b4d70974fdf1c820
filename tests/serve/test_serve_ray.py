"""ragjet as a Ray Serve application on a local Ray instance (2 CPUs): real HTTP through the ingress deployment to
two generation replicas of a tiny random-weight Llama, checked against the in-process pipeline; a generation replica
killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.stack import require_layers

require_layers()
ray = pytest.importorskip("ray", reason="Ray Serve is the optional extra ragjet[ray]")

from ray import serve

from benchmarks.servers import free_port
from ragjet.config import Settings, load_settings
from ragjet.llm.sampling_params import SamplingParams
from ragjet.rag.pipeline import RagPipeline
from ragjet.rag.ray_ingest import shutdown_ray
from ragjet.rag.types import Answer, AskOptions
from ragjet.serve.rayserve.affinity import affinity_key
from ragjet.serve.rayserve.app import build_app
from support.tiny_models import COLLECTION

pytestmark = pytest.mark.ray
APP = "ragjet-test"
QUESTION = "Who designed the Fresnel lens used in lighthouses?"


def ray_settings(data_dir: Path, model_dir: Path, **serve_settings: object) -> Settings:
    """The live server's settings (tests/support/live_server.py), served by two generation replicas of one CPU."""
    return load_settings(
        data_dir=data_dir,
        embed={"device": "cpu"},
        index={"device": "cpu"},
        llm={"model": str(model_dir), "device": "cpu", "max_model_len": 1024, "max_num_seqs": 8},
        rag={"answer_cache_entries": 0},
        serve={"default_collection": COLLECTION, "auth_enabled": False, **serve_settings},
        ray={"app_name": APP, "num_generation_replicas": 2, "max_generation_replicas": 2, "ingress_num_cpus": 0},
    )


@dataclass(frozen=True)
class RayApp:
    url: str
    reference: Answer  # QUESTION answered in-process over the same collection and model


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path) -> Iterator[RayApp]:
    """The corpus ingested by a writer process first (here, this one, which also answers the reference question),
    then served read-only through Ray."""
    data_dir = tmp_path_factory.mktemp("ray-data")
    reference = asyncio.run(ingest_and_answer(ray_settings(data_dir, tiny_llama_dir), corpus_dir))
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(ray_settings(data_dir, tiny_llama_dir, read_only=True)), name=APP, route_prefix="/")
        yield RayApp(f"http://127.0.0.1:{port}", reference)
    finally:
        serve.shutdown()
        shutdown_ray()


async def ingest_and_answer(settings: Settings, corpus_dir: Path) -> Answer:
    pipeline = RagPipeline(settings)
    await pipeline.start()
    try:
        await pipeline.ingest(COLLECTION, sorted(corpus_dir.iterdir()))
        return await pipeline.ask(QUESTION, AskOptions(COLLECTION, max_tokens=12))
    finally:
        await pipeline.close()


@pytest.fixture(scope="module")
def http(ray_app: RayApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ray_app.url, timeout=120) as client:
        yield client


def chat(question: str, max_tokens: int, stream: bool = False) -> dict[str, object]:
    messages = [{"role": "user", "content": question}]
    return {"model": COLLECTION, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def streamed(http: httpx.Client, body: dict[str, object]) -> list[dict]:
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def test_answers_through_ray_equal_the_in_process_pipelines(http: httpx.Client, ray_app: RayApp) -> None:
    plain = http.post("/v1/chat/completions", json=chat(QUESTION, 12))
    assert plain.status_code == 200, plain.text
    body, reference = plain.json(), ray_app.reference
    assert body["choices"][0]["message"]["content"] == reference.text  # greedy: the same tokens
    assert body["usage"]["prompt_tokens"] == reference.prompt_tokens  # templated and counted in the ingress
    assert body["usage"]["completion_tokens"] == reference.completion_tokens
    assert body["ragjet"]["citations"][0]["source"].endswith("lighthouse.md")
    chunks = streamed(http, chat(QUESTION, 12, stream=True))
    assert chunks[0]["ragjet"]["citations"]  # citations before the first token, as in-process
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == body["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_health_metrics_and_read_only_collections(http: httpx.Client) -> None:
    assert http.get("/readyz").status_code == 200
    http.post("/v1/chat/completions", json=chat("What is lava?", 4))
    metrics = http.get("/metrics").text
    for stage in ("embed", "search", "prefill", "decode", "total"):
        assert f'ragjet_stage_seconds_count{{stage="{stage}"}}' in metrics
    queries = next(line for line in metrics.splitlines() if line.startswith("ragjet_prefix_cache_queries_total"))
    assert float(queries.split()[-1]) > 0  # the generation replicas' engines, summed across the boundary
    files = [("files", ("tea.md", b"# Tea\n\nGreen tea is steamed.\n", "text/markdown"))]
    refused = http.post(f"/v1/collections/{COLLECTION}/documents", files=files)
    assert refused.status_code == 403, refused.text
    (document_count,) = [c["num_documents"] for c in http.get("/v1/collections").json()["collections"]]
    assert document_count == 3  # nothing stored


def test_prompts_sharing_their_first_source_share_a_replica_and_its_prefix_cache(ray_app: RayApp) -> None:
    generation = serve.get_deployment_handle("generation", APP).options(stream=True)
    params = SamplingParams(max_tokens=1, temperature=0)
    replicas: dict[str, set[str]] = {}
    for n in range(16):
        source = f"Sources:\n\n[1] notes-{n}.md\nLighthouse {n} stands on a cliff above the harbour of town {n}."
        for question in ("Where is it?", "How tall is it?"):
            prompt = f"{source}\n\n[2] other.md\nBread rises.\n\nQuestion: {question}"
            items = list(generation.stream.remote(prompt, params, affinity_key=affinity_key(prompt)))
            replicas.setdefault(source, set()).add(items[0].replica_id)
            if question == "How tall is it?":  # the first source's blocks were cached by the first question
                assert items[0].delta.num_cached_tokens >= 16
    assert all(len(ids) == 1 for ids in replicas.values())
    assert len(set.union(*replicas.values())) == 2  # 16 keys over 2 replicas: both used


def test_a_generation_replica_killed_mid_stream(http: httpx.Client) -> None:
    body = chat("Describe how bread dough rises.", 400, stream=True)
    events, killed = [], None
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            events.append(json.loads(line[6:]))
            if killed is None and events[-1]["choices"] and events[-1]["choices"][0]["delta"].get("content"):
                killed = kill_busy_generation_replica()
    assert killed is not None
    last = events[-1]
    assert last["choices"][0]["finish_reason"] in {"stop", "length", "error"}
    degraded = last["ragjet"]["degraded"] or ""
    # Complete (resumed on the other replica) or a clear, extractive answer: never a silently cut stream.
    assert "resumed on another replica" in degraded or "generator error" in degraded, degraded
    after = http.post("/v1/chat/completions", json=chat("What is lava?", 4))
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"]
    wait_for_replicas(2)  # Ray restarted the killed one


def kill_busy_generation_replica() -> str:
    """Kill the generation replica with a request in flight (Serve's replica actors report their load)."""
    prefix = f"SERVE_REPLICA::{APP}#generation#"
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]
    actors = [ray.get_actor(name, namespace="serve") for name in names]
    loads = ray.get([actor.get_num_ongoing_requests.remote() for actor in actors])
    busy = max(range(len(actors)), key=loads.__getitem__)
    assert loads[busy] >= 1, loads
    ray.kill(actors[busy], no_restart=False)
    return names[busy]


def wait_for_replicas(count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = serve.status().applications[APP].deployments["generation"].replica_states
        if states.get("RUNNING", 0) == count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"generation replicas not back to {count} running: {states}")
