"""The contention figure: other processes' share of the CPUs, excluding the benchmark's own time."""

from __future__ import annotations

import pytest

from benchmarks.contention import CpuSample, contention_note, others_share, sample


def test_own_cpu_time_is_not_counted_as_other_work() -> None:
    start, end = CpuSample(busy_s=10, total_s=20, own_s=1), CpuSample(busy_s=16, total_s=28, own_s=5)
    assert others_share(start, end) == pytest.approx((6 - 4) / 8)


def test_share_stays_in_range_and_is_unknown_without_samples() -> None:
    start = CpuSample(busy_s=10, total_s=20, own_s=0)
    assert others_share(start, CpuSample(busy_s=10, total_s=24, own_s=3)) == 0.0  # own time beyond busy: clock skew
    assert others_share(None, start) is None and others_share(start, start) is None
    assert contention_note(None) == ""
    assert "quiet" in contention_note(0.01) and "inflated" in contention_note(0.4)


def test_samples_of_this_machine_move_forward() -> None:
    first, second = sample(), sample()
    if first is None or second is None:
        pytest.skip("no /proc/stat here")
    assert second.total_s >= first.total_s and second.own_s >= first.own_s
