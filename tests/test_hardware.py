"""The host and the policy: detection from /proc/cpuinfo-style flags, forced narrower levels, the choices made
for AVX-512, AVX2, generic and aarch64 hosts, and the refusals that name a missing capability."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ragjet import hardware
from ragjet.hardware import CapabilityError, Host, detect_host, policy_for

AVX2_FLAGS = "fpu sse2 sse4_2 avx avx2 fma f16c bmi2"
AVX512_FLAGS = AVX2_FLAGS + " avx512f avx512bw avx512vl avx512dq avx512_bf16"


def fake_cpu(
    monkeypatch: pytest.MonkeyPatch, flags: str, machine: str = "x86_64", key: str = "flags", torch_reads: str = ""
) -> None:
    """A CPU whose /proc/cpuinfo lists `flags` and whose CPUID torch reads as `torch_reads` (default: the widest
    level the flags name)."""
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: {"model name": "Test CPU", key: flags})
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    level = torch_reads or ("AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "DEFAULT")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)


def a_host(isa: str, onednn_bf16: bool, machine: str = "x86_64") -> Host:
    return Host(machine, "Test CPU", (), isa, isa, "AVX2", onednn_bf16, 2, 24.0, ())  # type: ignore[arg-type]


def test_the_widest_level_the_flags_allow_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, AVX2_FLAGS)
    found = detect_host()
    assert (found.detected_isa, found.isa, found.onednn_bf16) == ("avx2", "avx2", False)
    assert "avx2" in found.flags and "avx512f" not in found.flags and found.cpu_model == "Test CPU"
    fake_cpu(monkeypatch, AVX512_FLAGS)
    assert detect_host().detected_isa == "avx512"
    fake_cpu(monkeypatch, "fpu sse2 avx")  # AVX without AVX2 (Sandy Bridge)
    assert detect_host().detected_isa == "generic"


def test_a_cpu_that_executes_less_than_its_cpuinfo_lists_gets_the_narrower_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """qemu-user -cpu Haswell shows the host's /proc/cpuinfo (AVX-512) while torch's CPUID reading says AVX2."""
    fake_cpu(monkeypatch, AVX512_FLAGS, torch_reads="AVX2")
    assert detect_host().detected_isa == "avx2"
    with pytest.raises(CapabilityError, match="avx512 as torch reads the CPU"):
        detect_host("avx512")


def test_aarch64_is_generic_and_builds_without_x86_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "fp asimd sve bf16 i8mm", machine="aarch64", key="Features")
    found = detect_host()
    assert found.detected_isa == "generic" and {"asimd", "sve", "bf16"} <= set(found.flags)
    policy = policy_for(found)
    assert policy.kernel_flags == () and policy.llm_dtype == torch.float32 and not policy.weight_only_kernels


def test_a_narrower_level_can_be_forced_and_a_wider_one_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, AVX2_FLAGS)
    forced = detect_host("generic")
    assert (forced.detected_isa, forced.isa, forced.forced) == ("avx2", "generic", True)
    with pytest.raises(CapabilityError, match="RAGJET_CPU_ISA=avx512 needs .*avx512bw avx512dq avx512f avx512vl"):
        detect_host("avx512")
    with pytest.raises(CapabilityError, match="'sse9' is not one of generic, avx2, avx512"):
        detect_host("sse9")
    fake_cpu(monkeypatch, "fp asimd", machine="aarch64", key="Features")
    with pytest.raises(CapabilityError, match="an x86-64 CPU"):
        detect_host("avx2")


def test_forcing_avx2_on_a_bf16_cpu_drops_its_bf16_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, AVX512_FLAGS)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert detect_host().onednn_bf16 and not detect_host("avx2").onednn_bf16


def test_avx512_with_bf16_keeps_the_bf16_paths() -> None:
    policy = policy_for(a_host("avx512", onednn_bf16=True))
    assert (policy.llm_dtype, policy.dense_dtype, policy.embed_dtype) == (torch.bfloat16,) * 3
    assert policy.weight_only_kernels and policy.prepack_dense == torch.backends.mkldnn.is_available()
    assert policy.kernel_flags == ("-march=x86-64-v4", "-mprefer-vector-width=512")


def test_avx2_runs_bf16_weight_only_layers_but_fp32_gemms() -> None:
    policy = policy_for(a_host("avx2", onednn_bf16=False))
    assert policy.llm_dtype == torch.bfloat16 and policy.weight_only_kernels
    assert policy.dense_dtype == torch.float32 and policy.embed_dtype == torch.float32 and not policy.prepack_dense
    assert policy.kernel_flags == ("-march=x86-64-v3",)
    assert "emulated" in policy.reasons["dense_dtype"]


def test_generic_computes_in_fp32_without_weight_only_kernels() -> None:
    policy = policy_for(a_host("generic", onednn_bf16=False))
    assert policy.llm_dtype == policy.dense_dtype == policy.embed_dtype == torch.float32
    assert not policy.weight_only_kernels and policy.kernel_flags == ()
    assert "isa=generic llm=float32" in policy.summary()


def test_a_forced_bf16_gemm_is_refused_naming_the_capability_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    avx2 = dataclasses.replace(hardware.host(), isa="avx2", onednn_bf16=False)
    monkeypatch.setattr(hardware, "host", lambda: avx2)
    with pytest.raises(CapabilityError, match=r"llm.quantization = 'bf16' needs a CPU with bf16 matrix support.*auto"):
        hardware.require_bf16_gemm("llm.quantization = 'bf16'")
