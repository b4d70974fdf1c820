"""Processes narrowed to a smaller CPU: every path's parity tests run on any host, the widest included."""

from __future__ import annotations

import os

import pytest

from ragjet.hardware import ISA_ENV, ISAS, host

# What narrows torch's own kernels, oneDNN's and MKL's to each level, beside ragjet's policy (RAGJET_CPU_ISA).
_TORCH_ENV = {
    "generic": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {},
}


def narrowed_env(isa: str) -> dict[str, str]:
    """The environment of a process that computes as a CPU of level `isa` would."""
    return {**os.environ, ISA_ENV: isa, **_TORCH_ENV[isa]}


def narrower_isas() -> list[object]:
    """Levels below this host's (pytest params); a skip where the host is already the narrowest."""
    below = ISAS[: ISAS.index(host().detected_isa)]
    return list(below) or [pytest.param("generic", marks=pytest.mark.skip(reason="this host is generic already"))]
