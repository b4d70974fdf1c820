"""Admission control refuses what could not finish in time, and always admits the first few requests."""

from __future__ import annotations

import time

import pytest

from ragjet.rag.admission import AdmissionController, OverloadedError


def completed(controller: AdmissionController, times: list[float]) -> None:
    controller._done_at.extend(times)


def test_hard_cap_on_requests_in_flight() -> None:
    controller = AdmissionController(max_in_flight=2, min_in_flight=2)
    with controller.admit(10), controller.admit(10), pytest.raises(OverloadedError, match="capacity"):
        controller.admit(10).__enter__()
    assert controller.in_flight == 0
    with controller.admit(10):  # slots come back
        assert controller.in_flight == 1


def test_refuses_when_queued_work_would_miss_the_deadline() -> None:
    controller = AdmissionController(max_in_flight=100, min_in_flight=2)
    now = time.monotonic()
    completed(controller, [now - 4, now - 3, now - 2, now - 1, now])  # one completion per second
    with controller.admit(5), controller.admit(5), controller.admit(5):  # 3 s of work queued: fits 0.7*5
        with controller.admit(5), pytest.raises(OverloadedError, match="overloaded") as refused:
            controller.admit(5).__enter__()  # 4 s of queued work > 3.5 s
        assert refused.value.retry_after_s >= 1
        with controller.admit(60):  # a patient request still gets in
            pass


def test_no_history_or_few_requests_are_always_admitted() -> None:
    controller = AdmissionController(max_in_flight=100, min_in_flight=4)
    with controller.admit(0.001), controller.admit(0.001), controller.admit(0.001):
        assert controller.expected_wait_s() == 0.0  # nothing measured yet
    completed(controller, [0.0, 10.0, 20.0, 30.0])  # very slow service
    with controller.admit(0.001):  # below min_in_flight: the engine batches it with the others
        assert controller.in_flight == 1
