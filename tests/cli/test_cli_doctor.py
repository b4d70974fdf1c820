"""`ragjet doctor` through the real CLI: the report names this host's CPU and the choices the policy made for it,
a forced narrower level shows as forced, a level the CPU lacks is one error line, and the default run builds the
fused kernels (subprocesses wherever the host, the policy or the loaded kernels must be fresh)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app
from ragjet.hardware import CpuPolicy, cpu_policy, host
from ragjet.llm.kernels import cpu as cpu_kernels

RAGJET = Path(sys.executable).with_name("ragjet")
SECTIONS = {"ragjet", "host", "policy", "embedder", "engine", "models", "data_dir"}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model"):
            return value.strip()
    pytest.skip("no CPU model in /proc/cpuinfo")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CPU, a data dir and an empty kernel cache of the test's own, in this process and for subprocesses."""
    values = {
        "RAGJET_DATA_DIR": str(tmp_path / "data"),
        "RAGJET_KERNEL_CACHE": str(tmp_path / "kernels"),
        "RAGJET_LLM__DEVICE": "cpu",  # the fused kernels are the CPU engine's
        "RAGJET_EMBED__DEVICE": "cpu",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAGJET_CPU_ISA", raising=False)
    return {**os.environ, **values}


def doctor(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RAGJET), "doctor", *args], env={**env, **extra}, capture_output=True, text=True)


def line(text: str, section: str, key: str) -> str:
    """The value of `section`'s `key : value` line."""
    block = text.split(f"\n{section}\n", 1)[-1].split("\n\n", 1)[0]
    found = re.search(rf"^  {key}\s+: (.*)$", block, re.MULTILINE)
    assert found, f"no {section}.{key} line in:\n{text}"
    return found.group(1)


def test_the_text_names_the_cpu_the_isa_the_dtypes_the_kernels_and_the_data_dir(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["doctor", "--no-build"])
    assert result.exit_code == 0, result.output
    text, policy = result.stdout, cpu_policy()
    assert line(text, "host", "cpu_model") == cpu_model()
    assert line(text, "host", "isa") == policy.isa and line(text, "host", "forced") == "no"
    assert line(text, "policy", "llm_dtype") == str(policy.llm_dtype).removeprefix("torch.")
    expected = cpu_kernels.status() if cpu_kernels.status() != "not loaded" else "not loaded: not built yet"
    assert line(text, "engine", "kernels") == expected  # an empty cache: --no-build says so and builds nothing
    assert not Path(env["RAGJET_KERNEL_CACHE"]).exists()
    assert line(text, "data_dir", "path") == str(Path(env["RAGJET_DATA_DIR"]).absolute())
    assert line(text, "data_dir", "exists") == "no"


def test_json_has_every_section_and_the_policy_this_process_chose(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["doctor", "--no-build", "--json"])
    assert result.exit_code == 0, result.output
    report, policy = json.loads(result.stdout), cpu_policy()
    assert set(report) == SECTIONS
    assert set(report["policy"]) == {f.name for f in dataclasses.fields(CpuPolicy)}
    assert report["policy"] == {
        **{f.name: getattr(policy, f.name) for f in dataclasses.fields(CpuPolicy)},
        "llm_dtype": str(policy.llm_dtype).removeprefix("torch."),
        "dense_dtype": str(policy.dense_dtype).removeprefix("torch."),
        "embed_dtype": str(policy.embed_dtype).removeprefix("torch."),
        "kernel_flags": list(policy.kernel_flags),
    }
    assert report["host"]["cpu_model"] == cpu_model() and report["host"]["isa"] == policy.isa
    assert report["engine"]["kernel_build"].startswith(env["RAGJET_KERNEL_CACHE"])
    packaged = report["models"]["all-MiniLM-L6-v2"]
    assert packaged["used_by"] == ["embed"] and (packaged["size_mb"] or packaged["error"])


def test_a_forced_generic_level_is_reported_as_forced_with_fp32(env: dict[str, str]) -> None:
    result = doctor(env, "--no-build", "--json", RAGJET_CPU_ISA="generic")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"]["isa"] == "generic" and report["host"]["forced"] is (host().detected_isa != "generic")
    assert report["policy"]["llm_dtype"] == "float32" and report["policy"]["weight_only_kernels"] is False
    assert report["engine"]["quantization"] == "none"  # auto: the weight-only kernels would be scalar loops


def test_a_level_the_cpu_cannot_run_is_one_error_line_and_exit_2(env: dict[str, str]) -> None:
    result = doctor(env, "--no-build", RAGJET_CPU_ISA="sse9")
    assert result.returncode == 2 and result.stdout == ""
    (error,) = [text for text in result.stderr.splitlines() if text.strip()]
    assert error.startswith("error: ") and "RAGJET_CPU_ISA" in error


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_server_refuses_a_level_the_cpu_cannot_run_before_it_starts(env: dict[str, str], command: str) -> None:
    """One line and exit 2 before anything loads or listens, not a traceback from the server's start-up."""
    env = {**env, "RAGJET_CPU_ISA": "sse9", "RAGJET_SERVE__PORT": "1", "RAGJET_SERVE__GRPC_PORT": "2"}
    result = subprocess.run([str(RAGJET), command], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    (error,) = [text for text in result.stderr.splitlines() if text.strip()]
    assert "RAGJET_CPU_ISA='sse9' is not one of generic, avx2, avx512" in error and "Traceback" not in result.stderr


def test_the_default_run_builds_the_kernels_into_a_cold_cache_and_says_so_first(env: dict[str, str]) -> None:
    result = doctor(env, "--json")  # one cold build (~15-30 s): the only test here that compiles
    assert result.returncode == 0, result.stderr
    assert f"building the fused CPU kernels for {cpu_policy().isa}" in result.stderr
    kernels = json.loads(result.stdout)["engine"]["kernels"]
    assert kernels.startswith("built in ") and env["RAGJET_KERNEL_CACHE"] in kernels, kernels
