"""The device check: one run on a lent GPU that checks the CUDA path against the CPU and measures it.

    python -m benchmarks.gpu_check --out "$OUT"          # on the GPU machine, ~5 min on an H100/H200
    python -m benchmarks.gpu_check --smoke --out /tmp/x  # the same checks on the CPU, tiny shapes (CI runs it)

Random-weight models are built on the spot (no weights travel): a SmolLM2-shaped one written as an HF directory
and loaded by the real loader, and a Llama-3-8B-shaped one (32 layers, 4096 hidden, GQA 32/8) built in GPU memory.
Checks: the device's greedy tokens in fp32 equal the CPU's for fresh prefill, prefix-cache hits, chunked
prefill, batched decode and speculative verify, and bf16 logits stay within tolerance of fp32. Measures: decode
tok/s at 1/16/64 concurrent, TTFT of a 600-token prompt, kernel launches and host syncs per decode step, the
8B-shaped TTFT and batch-1 decode against the memory-bandwidth bound, 1M x 384 fp16 search (single p50, batched
q/s), and a real out-of-memory drill. Everything lands in one JSON file, gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.layers.attention import uncached_metadata
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams


@dataclass(frozen=True, slots=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tie: bool


SMOLLM2 = Shape(49152, 576, 1536, 30, 9, 3, tie=True)
LLAMA3_8B = Shape(128256, 4096, 14336, 32, 32, 8, tie=False)
TINY = Shape(512, 64, 128, 2, 4, 2, tie=True)
GREEDY = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)


def hf_config(shape: Shape) -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": shape.vocab,
            "hidden_size": shape.hidden, "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "max_position_embeddings": 4096, "tie_word_embeddings": shape.tie,
            "bos_token_id": None, "eos_token_id": 0}  # fmt: skip


def random_state(shape: Shape, device: str, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-named random weights; embeddings scaled up so greedy choices are decided by clear margins."""
    gen = torch.Generator(device).manual_seed(seed)
    head_dim, h = shape.hidden // shape.heads, shape.hidden

    def w(*size: int, std: float = 0.02) -> torch.Tensor:
        return (torch.randn(*size, generator=gen, device=device) * std).to(dtype)

    state = {"model.embed_tokens.weight": w(shape.vocab, h, std=1.0), "model.norm.weight": w(h, std=0) + 1}
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        state |= {p + "self_attn.q_proj.weight": w(shape.heads * head_dim, h),
                  p + "self_attn.k_proj.weight": w(shape.kv_heads * head_dim, h),
                  p + "self_attn.v_proj.weight": w(shape.kv_heads * head_dim, h),
                  p + "self_attn.o_proj.weight": w(h, shape.heads * head_dim),
                  p + "mlp.gate_proj.weight": w(shape.intermediate, h),
                  p + "mlp.up_proj.weight": w(shape.intermediate, h),
                  p + "mlp.down_proj.weight": w(h, shape.intermediate),
                  p + "input_layernorm.weight": w(h, std=0) + 1,
                  p + "post_attention_layernorm.weight": w(h, std=0) + 1}  # fmt: skip
    if not shape.tie:
        state["lm_head.weight"] = w(shape.vocab, h)
    return state


def write_hf_dir(directory: Path, shape: Shape) -> Path:
    """A random-weight checkpoint as any HF directory: config.json, model.safetensors, tokenizer.json."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config(shape)))
    save_file(random_state(shape, "cpu", torch.float32), str(directory / "model.safetensors"))
    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(shape.vocab)}, unk_token="t1"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def prompts(shape: Shape, num: int, length: int, seed: int = 1) -> list[Any]:
    """``num`` random prompts of ``length`` token ids."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, shape.vocab, size=length).tolist() for _ in range(num)]


def tokens(loaded: LoadedModel, batch: list[Any], **config: Any) -> list[list[int]]:
    engine = LLMEngine(loaded, EngineConfig(**{"max_model_len": 1024, "block_size": 16, **config}))
    return [o.token_ids for o in engine.generate(batch, GREEDY)]


def correctness(model_dir: Path, shape: Shape, device: str) -> dict[str, Any]:
    """Greedy tokens of each step kind on ``device`` (fp32) against the CPU's, and bf16 logits against fp32."""
    cpu = load_model(str(model_dir), device="cpu", dtype=torch.float32)
    dev = load_model(str(model_dir), device=device, dtype=torch.float32)
    shared = prompts(shape, 1, 48)[0]
    batch = [shared + p for p in prompts(shape, 4, 24)]
    repetitive = [(p * 6)[:60] for p in prompts(shape, 2, 10, seed=2)]
    ids = torch.tensor(batch[0])  # logits first: an engine built on a model gives its layers a KV cache
    with torch.inference_mode():
        meta = uncached_metadata([len(ids)], torch.device("cpu"))
        expected = cpu.model.compute_logits(cpu.model(ids, torch.arange(len(ids)), meta))
        half = load_model(str(model_dir), device=device, dtype=torch.bfloat16 if device != "cpu" else torch.float32)
        on = ids.to(device)
        got = half.model.compute_logits(half.model(on, torch.arange(len(ids), device=device),
                                                   uncached_metadata([len(ids)], torch.device(device))))  # fmt: skip
    error = float((got.float().cpu() - expected).abs().max() / expected.std())
    reference = {"batch": [tokens(cpu, [p], num_speculative_tokens=0)[0] for p in batch],
                 "repetitive": [tokens(cpu, [p], num_speculative_tokens=0)[0] for p in repetitive]}  # fmt: skip
    engine = LLMEngine(dev, EngineConfig(max_model_len=1024, block_size=16, num_speculative_tokens=0))
    first = [o.token_ids for o in engine.generate(batch, GREEDY)]  # fresh prefills, then batched decode
    again = [o.token_ids for o in engine.generate(batch, GREEDY)]  # the shared prefix now hits the cache
    cases = {
        "fresh_prefill_and_batched_decode": first == reference["batch"],
        "prefix_hit_prefill": again == reference["batch"] and engine.stats().prefix_cache_hits > 0,
        "chunked_prefill": tokens(dev, batch, max_num_batched_tokens=32, num_speculative_tokens=0)
        == reference["batch"],
        "speculative_verify": tokens(dev, repetitive, num_speculative_tokens=3) == reference["repetitive"],
    }  # fmt: skip
    return {"cases": cases, "bf16_logit_error_over_std": error, "passed": all(cases.values()) and error < 0.1}


def timed_steps(engine: LLMEngine, batch: list[list[int]], max_tokens: int) -> tuple[float, float]:
    """(seconds of the first step, decode tok/s over the steps where every sequence decodes)."""
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    for p in batch:
        engine.add_request(p, params)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    start = time.perf_counter()
    engine.step()
    sync()
    first = time.perf_counter() - start
    decoded, start = 0, time.perf_counter()
    while engine.has_unfinished():
        decoded += sum(len(o.new_token_ids) for o in engine.step())
    sync()
    return first, decoded / (time.perf_counter() - start)


def step_profile(engine: LLMEngine, batch: list[list[int]]) -> dict[str, float]:
    """Kernel launches (graph replays count once) and host syncs in one pure decode step."""
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    for p in batch:
        engine.add_request(p, params)
    engine.step()
    engine.step()
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            engine.step()
            torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("default")
    names = [e.name for e in prof.events()]
    launches = sum(n in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch") for n in names)
    while engine.has_unfinished():
        engine.step()
    return {"launches_per_decode_step": launches, "host_syncs_per_decode_step": len(caught) - 1}  # less our own


def performance(model_dir: Path, shape: Shape, device: str, smoke: bool) -> dict[str, Any]:
    loaded = load_model(str(model_dir), device=device, dtype=torch.bfloat16 if device != "cpu" else torch.float32)
    engine = LLMEngine(loaded, EngineConfig(max_model_len=1024, max_num_seqs=64, num_speculative_tokens=0))
    timed_steps(engine, prompts(shape, 2, 32), 8)  # warm-up: kernels compiled, graphs replayed once
    results: dict[str, Any] = {}
    for n in (1, 16) if smoke else (1, 16, 64):
        _, results[f"decode_tok_s_{n}"] = timed_steps(engine, prompts(shape, n, 32, seed=n), 16 if smoke else 128)
    results["ttft_600_s"], _ = timed_steps(engine, prompts(shape, 1, 600, seed=9), 1)
    if device == "cuda":
        results |= step_profile(engine, prompts(shape, 16, 32, seed=5))
    return results


def eight_b(device: str) -> dict[str, Any]:
    """The 8B-shaped model in bf16, built in GPU memory: TTFT of 600 tokens, batch-1 decode vs the bandwidth bound."""
    from ragjet.llm.config import ModelConfig
    from ragjet.llm.loaders.weights import build_model, fuse_hf_tensors

    config = ModelConfig.from_hf_config(hf_config(LLAMA3_8B))
    state = fuse_hf_tensors(random_state(LLAMA3_8B, device, torch.bfloat16).items(), config)
    model = build_model(config, state, torch.device(device), torch.bfloat16)
    loaded = LoadedModel(model, config, None, Path("random-8b"))  # type: ignore[arg-type]
    engine = LLMEngine(loaded, EngineConfig(max_model_len=2048, max_num_seqs=16, num_speculative_tokens=0))
    timed_steps(engine, prompts(LLAMA3_8B, 1, 32), 4)
    ttft, _ = timed_steps(engine, prompts(LLAMA3_8B, 1, 600, seed=3), 1)
    _, tok_s = timed_steps(engine, prompts(LLAMA3_8B, 1, 32, seed=4), 128)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    bound = copy_bandwidth(device) / weights
    return {"ttft_600_s": ttft, "decode_tok_s_1": tok_s, "bandwidth_bound_tok_s": bound, "of_bound": tok_s / bound}


def copy_bandwidth(device: str) -> float:
    """Bytes per second of a device-to-device copy of 2 GiB (read + write counted once: a decode reads weights)."""
    a = torch.empty(2**30, dtype=torch.float16, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    return 2 * a.numel() * a.element_size() * 10 / (time.perf_counter() - start)


def search(device: str, smoke: bool) -> dict[str, float]:
    from ragjet.index import FlatIndex

    n = 20_000 if smoke else 1_000_000
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FlatIndex(384, device=device)
    index.add(np.arange(n), vectors)
    queries = vectors[:1024] + 0.01
    times = []
    for q in queries[:200]:
        start = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    _, ids = index.search(queries, 10)
    batched = len(queries) / (time.perf_counter() - start)
    return {"vectors": n, "single_p50_ms": float(np.median(times) * 1e3), "batched_q_s": batched,
            "recall_at_1": float(np.mean(ids[:, 0] == np.arange(len(queries))))}  # fmt: skip


def oom_drill(model_dir: Path) -> dict[str, Any]:
    """A real CUDA OOM: the memory cap is lowered below what a long prefill needs; the answer must still come
    (from the CPU twin), and serving returns to the GPU once the cap is lifted and the probe passes."""
    import asyncio

    from ragjet.config import LLMSettings
    from ragjet.llm.backends.native import NativeBackend

    async def drill() -> dict[str, Any]:
        settings = LLMSettings(model=str(model_dir), device="cuda", max_model_len=4096, cpu_twin="prepare")
        backend = NativeBackend.from_settings(settings)
        params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
        used = torch.cuda.memory_allocated() / torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(used + 0.002)
        text = " ".join(f"t{i % 4000 + 1}" for i in range(3500))
        degraded = [d.fallback async for d in backend.stream(text, params)]
        torch.cuda.set_per_process_memory_fraction(1.0)
        assert backend.cpu_fallback is not None
        backend.cpu_fallback.health._next_probe_at = 0.0  # the probe is due now: the cap is lifted
        after = [d.fallback async for d in backend.stream("t5 t6 t7", params)]
        await backend.close()
        return {"oom_answered_by": sorted({d for d in degraded if d}),
                "after_recovery": sorted({d for d in after if d})}  # fmt: skip

    return asyncio.run(drill())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny shapes: checks the checks")
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    shape = TINY if args.smoke else SMOLLM2
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
                              "torch": torch.__version__, "smoke": args.smoke}  # fmt: skip
    model_dir = write_hf_dir(args.out / "model", shape)
    steps = {"correctness": lambda: correctness(model_dir, shape, device),
             "performance": lambda: performance(model_dir, shape, device, args.smoke),
             "search": lambda: search(device, args.smoke)}  # fmt: skip
    if device == "cuda":
        steps |= {"llama3_8b_shaped": lambda: eight_b(device), "oom_drill": lambda: oom_drill(model_dir)}
    for name, run in steps.items():
        start = time.perf_counter()
        try:
            report[name] = run()
        except Exception as exc:  # noqa: BLE001 (one failed part must not lose the others' figures)
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{name}: {time.perf_counter() - start:.1f} s {report[name]}", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
