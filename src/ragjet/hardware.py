"""What this host computes with, detected once, and the one policy that turns it into compute choices.

Every CPU-side choice that depends on the machine is made here and nowhere else: the LLM's activation
dtype, whether its quantised layers keep a dense copy for prefill and in which dtype, whether weight-only
int4/int8 kernels are worth using, the embedder's dtype, the fused kernels' compiler flags, the thread
count. Layers read the policy; they never probe the hardware. A missing capability selects a slower
correct path; a setting the host cannot run is refused with a message naming the capability
(`CapabilityError`).

ISA levels, narrowest first:
    ``generic``: no vector ISA assumed (any x86-64, aarch64, anything else torch runs on).
    ``avx2``: AVX2 + FMA + F16C (x86-64-v3: Haswell and later, AMD Zen 1-3).
    ``avx512``: AVX-512 F/BW/VL/DQ (x86-64-v4: Skylake-X and later, AMD Zen 4/5).

``RAGJET_CPU_ISA=avx2|avx512|generic`` forces a level no wider than the host's: tests run every path's
parity checks on any machine with it. It narrows ragjet's own choices only; ``ATEN_CPU_CAPABILITY``,
``ONEDNN_MAX_CPU_ISA`` and ``MKL_ENABLE_INSTRUCTIONS`` narrow torch's, oneDNN's and MKL's kernels (set all four
to mimic a smaller CPU: tests/support/isa.py).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch

log = logging.getLogger(__name__)

Isa = Literal["generic", "avx2", "avx512"]
ISAS: tuple[Isa, ...] = get_args(Isa)  # narrowest first
ISA_ENV = "RAGJET_CPU_ISA"
_REQUIRED_FLAGS: dict[Isa, frozenset[str]] = {
    "generic": frozenset(),
    "avx2": frozenset({"avx2", "fma", "f16c"}),
    "avx512": frozenset({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq"}),
}
# Flags shown in `ragjet doctor`: the ones some path here, in torch or in oneDNN depends on.
REPORTED_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip
# gcc flags per level: named micro-architecture levels, never -march=native, so a build cached for one level
# runs on every CPU of that level (a cache shared across hosts never holds an AVX-512 build for an AVX2 host).
_KERNEL_FLAGS: dict[Isa, tuple[str, ...]] = {
    "generic": (),
    "avx2": ("-march=x86-64-v3",),
    "avx512": ("-march=x86-64-v4", "-mprefer-vector-width=512"),  # gcc keeps AVX-512 loops to 256 bits otherwise
}


class CapabilityError(RuntimeError):
    """A forced setting needs a CPU capability this host does not have."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    memory_gib: float
    capability: str  # compute capability, "9.0" for Hopper


@dataclass(frozen=True, slots=True)
class Host:
    machine: str  # platform.machine(): x86_64, aarch64, arm64
    cpu_model: str
    flags: tuple[str, ...]  # REPORTED_FLAGS the CPU has
    detected_isa: Isa  # the widest level the CPU supports
    isa: Isa  # the level in use: detected_isa, or narrower when RAGJET_CPU_ISA says so
    torch_capability: str  # torch's own dispatch level (ATEN_CPU_CAPABILITY narrows it)
    onednn_bf16: bool  # oneDNN runs bf16 GEMMs natively (and isa allows it)
    cores: int  # CPUs this process may run on
    memory_gib: float
    gpus: tuple[GpuInfo, ...]

    @property
    def forced(self) -> bool:
        return self.isa != self.detected_isa


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def _cpu_flags(info: dict[str, str]) -> frozenset[str]:
    return frozenset((info.get("flags") or info.get("Features") or "").split())  # x86 | aarch64


def _is_x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64")


_TORCH_LEVELS: dict[str, Isa] = {"AVX512": "avx512", "AVX2": "avx2"}  # anything else (DEFAULT, SVE256): generic


def _widest_isa(machine: str, flags: frozenset[str], torch_capability: str) -> Isa:
    """The narrower of what /proc/cpuinfo lists and what torch read from CPUID: under an emulator or some
    hypervisors /proc/cpuinfo shows the host's flags while the CPU that runs the code has fewer (seen under
    qemu-user: AVX-512 listed, AVX2 executed), and ATEN_CPU_CAPABILITY narrows torch's reading on purpose."""
    if not _is_x86(machine):
        return "generic"
    listed = next(isa for isa in reversed(ISAS) if _REQUIRED_FLAGS[isa] <= flags)
    executed = _TORCH_LEVELS.get(torch_capability, "generic")
    return min(listed, executed, key=ISAS.index)


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return 0.0


def _gpus() -> tuple[GpuInfo, ...]:
    if not torch.cuda.is_available():
        return ()
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        found.append(GpuInfo(i, props.name, props.total_memory / 2**30, f"{props.major}.{props.minor}"))
    return tuple(found)


def detect_host(forced_isa: str | None = None) -> Host:
    """Read the host; `forced_isa` (RAGJET_CPU_ISA) narrows the level used.

    Raises CapabilityError for an unknown level or one wider than the CPU has, naming the missing flags.
    """
    info = _cpuinfo()
    flags, machine = _cpu_flags(info), platform.machine()
    torch_capability = torch.backends.cpu.get_cpu_capability()
    detected = _widest_isa(machine, flags, torch_capability)
    isa = detected
    if forced_isa:
        if forced_isa not in ISAS:
            raise CapabilityError(f"{ISA_ENV}={forced_isa!r} is not one of {', '.join(ISAS)}")
        isa = forced_isa  # type: ignore[assignment]
        if ISAS.index(isa) > ISAS.index(detected):
            missing = " ".join(sorted(_REQUIRED_FLAGS[isa] - flags))
            missing = missing or f"{isa} as torch reads the CPU ({torch_capability})"
            if not _is_x86(machine):
                missing = f"an x86-64 CPU (this is {machine})"
            raise CapabilityError(
                f"{ISA_ENV}={isa} needs CPU capabilities this host lacks: {missing}; "
                f"unset {ISA_ENV} or set it to {detected} or narrower"
            )
    model = info.get("model name") or info.get("Model") or platform.processor() or machine
    return Host(
        machine=machine,
        cpu_model=model,
        flags=tuple(f for f in REPORTED_FLAGS if f in flags),
        detected_isa=detected,
        isa=isa,
        torch_capability=torch_capability,
        onednn_bf16=isa == "avx512" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        gpus=_gpus(),
    )


@dataclass(frozen=True, slots=True)
class CpuPolicy:
    """Every CPU compute choice, with the reason for each (shown by `ragjet doctor`, logged at start)."""

    isa: Isa
    llm_dtype: torch.dtype  # activations (and KV cache) of a quantised LLM
    weight_only_kernels: bool  # int4/int8 weight-only matmuls are vectorised: `quantization = "auto"` uses them
    dense_dtype: torch.dtype  # the dense copy many-row steps use (prefill), and dense-only models
    prepack_dense: bool  # hold dense bf16 weights in oneDNN's blocked layout
    embed_dtype: torch.dtype
    kernel_flags: tuple[str, ...]  # compiler flags of the fused kernels' build for this level
    threads: int
    reasons: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"cpu isa={self.isa} llm={dtype_name(self.llm_dtype)} dense={dtype_name(self.dense_dtype)} "
            f"weight-only kernels={'on' if self.weight_only_kernels else 'off'} embed={dtype_name(self.embed_dtype)} "
            f"threads={self.threads}"
        )


def dtype_name(dtype: torch.dtype) -> str:
    """How reports, logs and cache keys name a dtype: "bfloat16" for torch.bfloat16."""
    return str(dtype).removeprefix("torch.")


def policy_for(host: Host) -> CpuPolicy:
    """The CPU choices for `host` (pure: tests build policies for hosts they are not on)."""
    vectorised = host.isa != "generic"
    bf16 = host.onednn_bf16
    reasons = {
        "llm_dtype": "bf16 activations: torch's int4/int8 weight-only kernels widen bf16 in registers "
        "(vectorised for AVX2 and AVX-512)"
        if vectorised
        else "fp32: without AVX2 the weight-only kernels are scalar loops, so dense fp32 BLAS is faster",
        "dense_dtype": "bf16, prepacked for oneDNN (native bf16 GEMMs)"
        if bf16
        else "fp32 (oneDNN/MKL fp32 GEMM; bf16 GEMMs would be emulated on this CPU, ~10x slower)",
        "embed_dtype": "bf16 (native bf16 matmuls)" if bf16 else "fp32 (bf16 matmuls would be emulated)",
        "kernels": f"fused kernels built for {host.isa} ({' '.join(_KERNEL_FLAGS[host.isa]) or 'baseline flags'})",
    }
    return CpuPolicy(
        isa=host.isa,
        llm_dtype=torch.bfloat16 if vectorised else torch.float32,
        weight_only_kernels=vectorised,
        dense_dtype=torch.bfloat16 if bf16 else torch.float32,
        prepack_dense=bf16 and torch.backends.mkldnn.is_available(),
        embed_dtype=torch.bfloat16 if bf16 else torch.float32,
        kernel_flags=_KERNEL_FLAGS[host.isa] if _is_x86(host.machine) else (),
        threads=torch.get_num_threads(),
        reasons=reasons,
    )


@functools.cache
def host() -> Host:
    """This process's host, detected on first use (RAGJET_CPU_ISA applied)."""
    return detect_host(os.environ.get(ISA_ENV) or None)


@functools.cache
def cpu_policy() -> CpuPolicy:
    """This process's CPU policy, chosen and logged once."""
    policy = policy_for(host())
    log.info("%s (%s)", policy.summary(), host().cpu_model)
    return policy


def require_bf16_gemm(setting: str) -> None:
    """Refuse a forced dense-bf16 CPU setting on a CPU whose bf16 GEMMs are emulated (slow, and on some
    builds a oneDNN error); `setting` names what the user set."""
    h = host()
    if not h.onednn_bf16:
        raise CapabilityError(
            f"{setting} needs a CPU with bf16 matrix support (AVX-512 BW/VL/DQ for oneDNN's bf16, or AVX-512 BF16 / "
            f"AMX); this one runs at {h.isa} ({h.cpu_model}): leave llm.dtype and llm.quantization on 'auto'"
        )
