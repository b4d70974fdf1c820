"""The default stack (packaged MiniLM and SmolLM2, the CPU defaults) ingests, serves and answers in processes
narrowed to every ISA level below this host's: an AVX2 CPU and a generic (aarch64-like) one, on any host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port, ragjet_env, server_process
from support.isa import narrowed_env, narrower_isas

pytestmark = pytest.mark.slow
EXPECTED_LLM_DTYPE = {"avx2": "bfloat16", "generic": "float32"}


@pytest.mark.parametrize("isa", narrower_isas())
def test_the_default_models_serve_and_answer_at_a_narrower_level(isa: str, tmp_path: Path, corpus_dir: Path) -> None:
    ragjet = str(Path(sys.executable).with_name("ragjet"))
    port, grpc_port = free_port(), free_port()
    settings = {
        "serve": {"port": port, "grpc_port": grpc_port, "auth_enabled": False, "default_collection": "notes"},
        "llm": {"device": "cpu", "kv_cache_memory_gb": 0.25},
        "embed": {"device": "cpu"},
    }
    env = narrowed_env(isa) | ragjet_env(settings, tmp_path / "data") | {"HF_HUB_OFFLINE": "1"}
    ingested = subprocess.run([ragjet, "ingest", str(corpus_dir), "-c", "notes"], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    url = f"http://127.0.0.1:{port}"
    with server_process([ragjet, "serve"], url, tmp_path / "serve.log", env=env, ready_timeout_s=300):
        system = httpx.get(f"{url}/v1/system", timeout=60).json()
        assert system["host"]["isa"] == isa
        assert system["engine"]["dtype"] == EXPECTED_LLM_DTYPE[isa]
        assert system["engine"]["kernels"].endswith(")") and f"for {isa}" in system["engine"]["kernels"]
        question = {"model": "notes", "messages": [{"role": "user", "content": "When was the Pharos built?"}],
                    "max_tokens": 24, "temperature": 0}  # fmt: skip
        answer = httpx.post(f"{url}/v1/chat/completions", json=question, timeout=300)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"].strip()
    assert any("lighthouse" in c["source"] for c in body["ragjet"]["citations"])
    assert "Traceback" not in (tmp_path / "serve.log").read_text(errors="replace")
