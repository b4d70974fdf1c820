"""One typed settings tree for every ragjet process.

Values come, in rising priority, from the defaults below, a TOML file (``ragjet.toml`` in the working
directory or the path in ``RAGJET_CONFIG``), and environment variables ``RAGJET_<SECTION>__<FIELD>``
(for example ``RAGJET_INDEX__KIND=hnsw``). Engine internals take their own frozen dataclass configs
built from these sections; pydantic lives only at this edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# "auto" (a GPU when there is one), "cpu", "cuda" (the current GPU) or "cuda:N" (GPU N of several).
Device = Annotated[str, StringConstraints(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")]


class Section(BaseModel):
    """Rejects unknown keys so a typo in a config file is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class ChunkSettings(Section):
    max_tokens: int = Field(256, ge=16, le=8192, description="token budget of one chunk (embedder tokens)")
    overlap_tokens: int = Field(32, ge=0, description="tokens repeated from the previous chunk")

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"chunk.overlap_tokens ({self.overlap_tokens}) must be below chunk.max_tokens ({self.max_tokens})"
            )
        return self


class EmbedSettings(Section):
    model: str = Field("all-MiniLM-L6-v2", description="packaged model name or a local model directory")
    device: Device = "auto"
    backend: Literal["torch", "onnxruntime"] = Field(
        "torch", description="torch: our BertEncoder; onnxruntime: its ONNX export (extra ragjet[onnx])"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs with native bf16 matmuls, else fp32 (onnxruntime: "
        "fp32); int8 needs backend onnxruntime. Every precision keeps the model's embedder id",
    )
    int8_scheme: Literal["static", "dynamic"] = Field(
        "static", description="int8 only: static (activation scales calibrated on 1,024 chunks) or dynamic"
    )
    calibration_collection: str = Field(
        "", description="int8 static: calibrate on this collection's own chunks (1,024 spread over its first "
        "8,192; it needs 1,024); empty: on the demo corpus's chunks",
    )
    batch_size: int = Field(64, ge=1, le=4096)
    max_wait_ms: float = Field(2.0, ge=0, description="dynamic batcher: longest wait to fill a batch")


class IndexSettings(Section):
    kind: Literal["flat", "ivf_flat", "ivf_pq", "hnsw"] = "flat"
    nlist: int = Field(0, ge=0, description="IVF lists; 0 picks ~4*sqrt(N)")
    nprobe: int = Field(16, ge=1)
    pq_m: int = Field(48, ge=1, description="IVF-PQ sub-quantizers (must divide the dimension)")
    hnsw_m: int = Field(32, ge=4)
    ef_search: int = Field(64, ge=1)
    refine_factor: int = Field(4, ge=1, description="ANN candidates per result kept for exact rescoring")
    num_shards: int = Field(
        1, ge=1, le=64, description="shards a new collection is split into (by a hash of each document's source), "
        "searched in parallel and merged exactly; fixed when the collection is created",
    )
    device: Device = "auto"


class RetrieveSettings(Section):
    top_k: int = Field(5, ge=1, le=1000)
    coarse_k: int = Field(100, ge=1, le=10000, description="candidates from the first (ANN) stage")
    use_bm25: bool = True
    rerank: Literal["fused", "cross-encoder"] = Field(
        "fused", description="fused: exact rescoring fused with BM25; cross-encoder: then a cross-encoder reorders "
        "the best cross_encoder_candidates (needs cross_encoder_model)",
    )
    cross_encoder_model: str = Field("", description="a local HF directory of a BERT sequence-classification model")
    cross_encoder_candidates: int = Field(20, ge=1, le=200, description="fused candidates the cross-encoder scores")
    cross_encoder_budget_ms: float = Field(
        250.0, gt=0, description="most time the cross-encoder may take; unscored candidates keep their fused order"
    )
    rrf_k: int = Field(60, ge=1, description="reciprocal-rank fusion constant")


class LLMSettings(Section):
    backend: Literal["native", "openai"] = "native"
    model: str = Field("SmolLM2-135M-Instruct", description="packaged model name, a GGUF file or an HF directory")
    device: Device = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    quantization: Literal["auto", "none", "int8", "int4", "bf16"] = Field(
        "auto",
        description="weights after loading; auto = int4 (Q4_1 GGUF) or int8 weight-only on CPU, none (bf16) on CUDA",
    )
    dense_prefill: bool = Field(
        True,
        description="CPU int8/int4: steps of many rows (prefills, decode batches of 10+ sequences) use a dense "
        "copy of each weight, LM head included (several times faster; bf16 where the CPU has native bf16 GEMMs, "
        "2 bytes a parameter more memory, else fp32, 4 bytes: see `ragjet doctor`)",
    )
    cpu_kernels: bool = Field(
        True,
        description="CPU: fused C++ kernels for add+RMSNorm, RoPE and paged attention of decode and verify "
        "steps, compiled for the CPU's ISA level on first start (needs a C++ compiler and ninja; ~15-30 s, then "
        "cached), pure torch without them",
    )
    fused_cpu_decode: bool = Field(
        True,
        description="CPU, with cpu_kernels and int4 layers: run a decode (or verify) step's decoder layers as one "
        "C++ op, the same ops as the Python layers without the interpreter (same tokens; ~4 ms less a token for "
        "SmolLM2 on 2 cores)",
    )
    max_num_seqs: int = Field(32, ge=1, description="sequences decoded together")
    max_num_batched_tokens: int = Field(
        4096,
        ge=16,
        description="tokens one forward computes: longer prompts, and bursts of them, are prefilled in chunks of "
        "this many while streams keep decoding (a smaller value bounds each stream's stall: on a 2-core CPU "
        "about 1 s per 1,000 prompt tokens)",
    )
    max_model_len: int = Field(4096, ge=16)
    block_size: int = Field(16, ge=1)
    kv_cache_memory_gb: float = Field(0.0, ge=0, description="KV pool size; 0 sizes it automatically")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="share of the GPU's memory the engine fills: weights, activations, KV pool"
    )
    max_waiting: int = Field(256, ge=1, description="bounded waiting queue; beyond it requests are refused")
    enable_prefix_caching: bool = True
    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="processes the model is sharded over (one per GPU; gloo ranks on the CPU); it "
        "must divide the model's attention and KV heads",
    )
    chunk_reuse: Literal["exact", "blend"] = Field(
        "exact",
        description="exact: K/V reused for exact prompt prefixes only (prefix caching, no change to answers); "
        "blend: a retrieved chunk's K/V, computed once, is reused wherever it lands in a later prompt, with the "
        "glue between chunks and each chunk's first chunk_recompute_tokens recomputed (docs/kv-reuse.md)",
    )
    chunk_cache_gb: float = Field(1.0, ge=0, description="blend: host memory for cached chunk K/V")
    chunk_recompute_tokens: int = Field(4, ge=0, description="blend: leading tokens of each reused chunk recomputed")
    cpu_twin: Literal["auto", "prepare", "on_failure"] = Field(
        "auto",
        description="CUDA: when to build the CPU twin that serves if the GPU fails: at start in the background "
        "(prepare), only on the first failure (on_failure), or at start when the host's free RAM holds it (auto)",
    )
    num_speculative_tokens: int = Field(
        3, ge=0, description="prompt-lookup draft tokens verified per greedy decode step (0 = no speculative decoding)"
    )
    max_speculative_seqs: int = Field(4, ge=1, description="draft only in decode steps of at most this many sequences")
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    openai_api_key: str = ""
    openai_model: str = ""
    request_timeout_s: float = Field(120.0, gt=0)


class RagSettings(Section):
    system_prompt: str = Field(
        "You answer questions using only the numbered sources below. Cite the sources you use as [n], "
        "for example [1] or [2][3]. If the sources do not contain the answer, say that you do not know.",
        description="system message of every RAG prompt",
    )
    review_threshold: float = Field(0.35, ge=0, le=1, description="answers less confident than this need review")
    confidence_model: Path | None = Field(
        None, description="fitted confidence model (`ragjet eval --calibrate` writes one); None: the packaged fit "
        "for SmolLM2, rag/data/confidence-smollm2.json",
    )
    max_context_chunks: int = Field(8, ge=1, le=100, description="most retrieved chunks put into one prompt")
    deadline_s: float = Field(120.0, gt=0, description="request budget when the client sets none")
    max_in_flight: int = Field(64, ge=1, description="answers in progress at once; beyond it requests get 429")
    context: Literal["adaptive", "fixed"] = Field(
        "adaptive",
        description="adaptive: the prompt keeps the retrieved chunks scoring within context_score_gap of the best "
        "(fewer prompt tokens: faster, and less to confuse a small model); fixed: always top_k chunks",
    )
    context_score_gap: float = Field(0.03, ge=0, le=2, description="adaptive: how far below the best chunk's "
                                     "cosine similarity a chunk may score and still go into the prompt")  # fmt: skip
    not_found_below: float = Field(
        0.2, ge=-1, le=1, description="adaptive: when no chunk's cosine similarity reaches this, the answer is "
        "'not found in the documents' at once, with no generation (-1: always generate)",
    )
    stop_on_repetition: bool = Field(
        True, description="end a generation when it repeats a whole sentence (small models loop; the rest is noise)"
    )
    answer_cache_entries: int = Field(1024, ge=0, description="answers kept for repeated questions (0: no cache)")
    answer_cache_similarity: float = Field(
        0.97, gt=0, le=1, description="a question this similar (cosine) to a cached one, with the same options and "
        "collection version, gets the cached answer",
    )


class ServeSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    grpc_port: int = Field(50051, ge=1, le=65535)
    max_request_bytes: int = Field(1_000_000, ge=1024, description="largest JSON request body")
    max_upload_bytes: int = Field(50_000_000, ge=1024, description="largest document upload request")
    default_collection: str = Field("python-docs", description="answers come from here when a request names none")
    model_aliases: list[str] = Field(
        default_factory=list, description="OpenAI model names that, like `ragjet`, mean the default collection"
    )
    auth_enabled: bool = Field(True, description="require an API key on every route but health (off only for demos)")
    read_only: bool = Field(
        False, description="refuse every collection write with 403: a serving replica whose collections another "
        "process publishes (deploy/k8s)",
    )
    rate_limit_per_s: float = Field(20.0, gt=0, description="sustained requests per second per API key (or client)")
    rate_limit_burst: int = Field(40, ge=1, description="requests a key may send at once before rate limiting")
    ingest_roots: list[Path] = Field(
        default_factory=list, description="folders server-side path ingestion may read; empty disables it"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(True, description="JSON log lines with request ids (False: plain text)")
    tracing: bool = Field(False, description="OpenTelemetry spans per stage (exporter from OTEL_* env or console)")


class RaySettings(Section):
    """`ragjet serve --ray`: the ingress (HTTP, retrieval) and generation deployments of the Ray Serve app."""

    app_name: str = Field("ragjet", min_length=1, description="the Ray Serve application's name")
    num_ingress_replicas: int = Field(
        1, ge=1, description="ingress replicas at start (HTTP routes, embedding, retrieval; the autoscaling floor)"
    )
    max_ingress_replicas: int = Field(
        1, ge=1, description="ingress autoscaling ceiling; above num_ingress_replicas Ray scales on ongoing requests"
    )
    ingress_num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each ingress replica")
    num_generation_replicas: int = Field(1, ge=1, description="generation replicas at start (the autoscaling floor)")
    max_generation_replicas: int = Field(
        1, ge=1, description="autoscaling ceiling; above num_generation_replicas Ray scales on ongoing requests"
    )
    target_ongoing_requests: float = Field(
        8.0, gt=0, description="autoscaling target: ongoing requests per replica, generation and ingress alike"
    )
    max_ongoing_requests: int = Field(
        32, ge=1, description="requests one generation replica is sent at once; past it the router picks the next one"
    )
    generation_num_cpus: float = Field(1.0, ge=0, description="CPUs (and torch threads) per generation replica")
    generation_num_gpus: float | None = Field(
        None, ge=0, description="GPUs per generation replica; None: llm.tensor_parallel_size where the cluster has "
        "GPUs and llm.device allows CUDA, else 0",
    )
    affinity: bool = Field(
        True, description="send prompts that share their first source to the same generation replica (prefix-cache "
        "hits); False: Ray's power-of-two-choices",
    )
    max_resumes: int = Field(
        1, ge=0, description="times a stream cut off by a dying generation replica is resumed on another one"
    )
    stream_interval_ms: float = Field(
        50.0, ge=0, description="tokens a generation replica makes within this long travel as one message (the first "
        "and last are never held); 0: merged only when they queue up in the replica",
    )
    connect_timeout_s: float = Field(
        30.0, gt=0, description="how long `ragjet serve --ray --ray-address` waits for the cluster before exiting"
    )
    shard_collections: list[str] = Field(
        default_factory=list, description="sharded collections whose shards are each searched by their own replica "
        "(ShardSearcher, CPU, read-only); the ingress merges and fuses. Others are searched in the ingress",
    )
    shard_num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each shard replica")
    shard_timeout_s: float = Field(
        5.0, gt=0, description="how long a query waits for a shard replica; past it the shard is left out (degraded)"
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> RaySettings:
        if self.max_generation_replicas < self.num_generation_replicas:
            raise ValueError("ray.max_generation_replicas must be at least ray.num_generation_replicas")
        if self.max_ingress_replicas < self.num_ingress_replicas:
            raise ValueError("ray.max_ingress_replicas must be at least ray.num_ingress_replicas")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGJET_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file=os.environ.get("RAGJET_CONFIG", "ragjet.toml"),
    )

    data_dir: Path = Field(Path("~/.local/share/ragjet"), description="collections, caches, review queue")
    chunk: ChunkSettings = ChunkSettings()
    embed: EmbedSettings = EmbedSettings()
    index: IndexSettings = IndexSettings()
    retrieve: RetrieveSettings = RetrieveSettings()
    llm: LLMSettings = LLMSettings()
    rag: RagSettings = RagSettings()
    serve: ServeSettings = ServeSettings()
    ray: RaySettings = RaySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def collections_dir(self) -> Path:
        return self.data_dir.expanduser() / "collections"

    @property
    def tenants_dir(self) -> Path:
        """Collections of tenants other than the default one, one folder each."""
        return self.data_dir.expanduser() / "tenants"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir.expanduser() / "cache"


class ConfigError(ValueError):
    """A settings problem, phrased for the person who wrote the config."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings tree, turning pydantic's report into one readable message per bad field."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid ragjet settings:\n" + "\n".join(lines)) from None
