"""`ragjet generate`: streamed output and summary on a tiny model, one-line user errors, the real SmolLM2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Needs the engine (SamplingParams, LLMEngine, loaders): skip until it lands.
for _module in ("ragjet.llm.sampling_params", "ragjet.llm.engine.llm_engine", "ragjet.llm.tokenizer"):
    pytest.importorskip(_module)

from ragjet.cli import app  # noqa: E402
from ragjet.llm.loaders import load_model  # noqa: E402
from ragjet.llm.sampling_params import SamplingParams  # noqa: E402


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["generate", *args], env=env)


def test_streams_the_greedy_completion_and_a_summary(tiny_llama_dir: Path) -> None:
    result = invoke("Sourdough bread", "--model", str(tiny_llama_dir), "--max-tokens", "6", "--temperature", "0")
    assert result.exit_code == 0, result.output
    from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Sourdough bread"}])
    (expected,) = LLMEngine(loaded, EngineConfig()).generate([prompt], SamplingParams(temperature=0.0, max_tokens=6))
    assert result.stdout == expected.text + "\n"
    assert "TTFT" in result.stderr and "tok/s" in result.stderr and "tokens" in result.stderr


def test_raw_prompt_skips_the_chat_template(tiny_llama_dir: Path) -> None:
    chat = invoke("Mount Etna", "--model", str(tiny_llama_dir), "--max-tokens", "5", "--temperature", "0")
    raw = invoke("Mount Etna", "--model", str(tiny_llama_dir), "--max-tokens", "5", "--temperature", "0", "--raw")
    assert chat.exit_code == raw.exit_code == 0
    assert chat.stdout != raw.stdout  # different prompts, different greedy continuations


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "the prompt is empty"),
        (["hi", "--model", "/nonexistent/model-dir"], "/nonexistent/model-dir"),
        (["hi", "--temperature", "-1"], "temperature"),
        (["hi", "--top-p", "1.5"], "top_p"),
        (["hi", "--max-tokens", "0"], "max_tokens"),
        (["hi", "--backend", "tgi"], "backend"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(tiny_llama_dir: Path, args: list[str], message: str) -> None:
    if "--model" not in args:
        args = [*args, "--model", str(tiny_llama_dir)]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and message in line


def test_prompt_too_long_for_the_model(tiny_llama_dir: Path) -> None:
    result = invoke("word " * 300, "--model", str(tiny_llama_dir), env={"RAGJET_LLM__MAX_MODEL_LEN": "64"})
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "prompt" in line


@pytest.mark.slow
def test_real_smollm2_in_a_subprocess() -> None:
    ragjet = Path(sys.executable).with_name("ragjet")
    command = [str(ragjet), "generate", "What is Python?", "--max-tokens", "12"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAGJET_LLM__DEVICE": "cpu"}
    done = subprocess.run([*command, "--temperature", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # some words from the real model
    assert "TTFT" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"RAGJET_LLM__QUANTIZATION": "bf16"}, "llm.quantization = 'bf16'"),
        ({"RAGJET_LLM__DTYPE": "bfloat16", "RAGJET_LLM__QUANTIZATION": "none"}, "llm.dtype = 'bfloat16'"),
    ],
)
def test_a_forced_bf16_model_on_a_cpu_without_bf16_gemms_is_one_clear_error(
    tiny_llama_dir: Path, setting: dict[str, str], named: str
) -> None:
    """On an AVX2 CPU (here: a process narrowed to one) dense bf16 GEMMs are emulated: refused before loading,
    naming the setting, the capability and what to set instead; no oneDNN traceback."""
    from support.isa import narrowed_env

    ragjet = Path(sys.executable).with_name("ragjet")
    env = narrowed_env("avx2") | setting | {"RAGJET_LLM__DEVICE": "cpu"}
    command = [str(ragjet), "generate", "hi", "--model", str(tiny_llama_dir), "--max-tokens", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error:") and named in line and "bf16 matrix support" in line and "'auto'" in line
