"""Helper threads can run torch single-threaded while other threads keep torch's thread count."""

from __future__ import annotations

import threading

import torch

from ragjet.cpu_threads import run_torch_single_threaded, single_threaded_executor


def thread_count_in_new_thread(single_threaded: bool = False) -> int:
    counts: list[int] = []

    def work() -> None:
        if single_threaded:
            run_torch_single_threaded()
        torch.ones(64, 64) @ torch.ones(64, 64)  # a parallel-capable op must not raise the count again
        counts.append(torch.get_num_threads())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return counts[0]


def test_a_single_threaded_helper_leaves_the_other_threads_alone() -> None:
    default = torch.get_num_threads()
    assert thread_count_in_new_thread(single_threaded=True) == 1
    assert torch.get_num_threads() == default
    assert thread_count_in_new_thread() == default


def test_the_executor_threads_run_torch_single_threaded() -> None:
    with single_threaded_executor("test-helper") as pool:
        assert pool.submit(torch.get_num_threads).result() == 1
