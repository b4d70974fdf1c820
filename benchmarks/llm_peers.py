"""Generation peers for the LLM benchmark: HF transformers `generate` and llama.cpp (llama-cpp-python).

Both serve one request at a time, as a naive server around them does: N concurrent requests are N
requests queued one after another. Each runner takes prompt token ids and a token count, generates
exactly that many tokens greedily (end-of-sequence ignored, so every system does the same work), and
reports when the first and the last token appeared.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True, slots=True)
class Timing:
    """One request, clocked from the moment it was submitted (queueing included)."""

    ttft_s: float
    latency_s: float
    num_tokens: int


# (prompt token ids, new tokens) -> Timing measured from the call
Runner = Callable[[list[int], int], Timing]


def run_sequentially(runner: Runner, prompts: list[list[int]], num_new_tokens: int) -> list[Timing]:
    """All requests submitted at once to a one-at-a-time server: request i waits for requests 0..i-1."""
    submitted = time.perf_counter()
    timings = []
    for prompt in prompts:
        started = time.perf_counter()
        t = runner(prompt, num_new_tokens)
        queued_s = started - submitted
        timings.append(Timing(queued_s + t.ttft_s, queued_s + t.latency_s, t.num_tokens))
    return timings


class _TokenClock:
    """A transformers streamer that notes when each new token arrives (the first put() is the prompt)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stamps: list[float] = []
        self.is_prompt = True

    def put(self, value: torch.Tensor) -> None:
        if self.is_prompt:
            self.is_prompt = False
            return
        self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


def transformers_model_from_gguf(gguf_path: Path, dtype: torch.dtype, device: str) -> torch.nn.Module:
    """The GGUF's weights dequantised by transformers' own GGUF reader into its LlamaForCausalLM.

    An independent conversion from ours, so the benchmark also checks that both engines agree.
    """
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    fields = load_gguf_checkpoint(str(gguf_path))["config"]
    config = LlamaConfig(**{k: v for k, v in fields.items() if not k.startswith("_")})
    model = LlamaForCausalLM(config)
    weights = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    loaded = model.load_state_dict(weights, strict=False)
    if set(loaded.missing_keys) - {"lm_head.weight"} or loaded.unexpected_keys:  # lm_head is the tied embedding
        raise ValueError(f"{gguf_path}: transformers could not map {loaded.missing_keys + loaded.unexpected_keys}")
    model.tie_weights()
    module: torch.nn.Module = model
    return module.to(device=device, dtype=dtype).eval()


def transformers_greedy_tokens(
    model: torch.nn.Module, prompt: list[int], num_new_tokens: int, streamer: _TokenClock | None = None
) -> list[int]:
    """Exactly `num_new_tokens` greedy tokens from transformers' `generate`."""
    input_ids = torch.tensor([prompt], device=next(model.parameters()).device)
    with torch.inference_mode():
        output = model.generate(  # type: ignore[operator]
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=num_new_tokens,
            min_new_tokens=num_new_tokens,
            do_sample=False,
            streamer=streamer,
            pad_token_id=0,
        )
    return output[0, len(prompt) :].tolist()


def transformers_runner(model: torch.nn.Module) -> Runner:
    """`model` is a transformers causal LM (eval mode, on its device) holding the benchmarked weights."""

    def run(prompt: list[int], num_new_tokens: int) -> Timing:
        clock = _TokenClock()
        transformers_greedy_tokens(model, prompt, num_new_tokens, streamer=clock)
        return Timing(clock.stamps[0] - clock.started, clock.stamps[-1] - clock.started, len(clock.stamps))

    return run


def llama_cpp_runner(gguf_path: Path, n_ctx: int, n_threads: int) -> tuple[Runner | None, str]:
    """A llama.cpp runner for the same GGUF file, or None and the reason when llama-cpp-python is missing.

    llama.cpp keeps the KV cache of the previous prompt and reuses its longest common prefix, as its server
    does; that is its own behaviour and stays on.
    """
    try:
        import llama_cpp
    except ImportError:
        return None, "llama-cpp-python is not installed (`make bench-peers` installs it)"
    failure = _llama_cpp_probe(gguf_path, n_threads)
    if failure:
        return None, f"llama-cpp-python {llama_cpp.__version__} is installed but {failure}"
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
    )

    def run(prompt: list[int], num_new_tokens: int) -> Timing:
        started = time.perf_counter()
        stamps = []
        # temp=0 is greedy; generate() never stops by itself, so the end-of-sequence token is ignored too.
        for _ in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            stamps.append(time.perf_counter())
            if len(stamps) == num_new_tokens:
                break
        return Timing(stamps[0] - started, stamps[-1] - started, len(stamps))

    return run, f"llama-cpp-python {llama_cpp.__version__}, n_threads={n_threads}"


_PROBE = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), verbose=False)
next(iter(llm.generate(llm.tokenize(b"Hello there. " * 100), temp=0.0, top_k=1)))  # a bench-sized prefill
"""


def _llama_cpp_probe(gguf_path: Path, n_threads: int) -> str | None:
    """Generate one token in a child process first: a llama.cpp build that crashes on this CPU would
    otherwise take the whole benchmark down with it. Returns what went wrong, or None."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(gguf_path), str(n_threads)], capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return "its one-token probe did not finish in 300 s"
    if done.returncode == 0:
        return None
    reason = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
    return f"its one-token probe on this machine died ({reason}), so llama.cpp is not measured"
