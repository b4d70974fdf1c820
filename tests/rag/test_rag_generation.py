"""Generation bookkeeping: text, token counts, mean logprob, phase clocks."""

from __future__ import annotations

import math
import time

from ragjet.rag.generation import GenerationTrace


def test_trace_accumulates_pieces_tokens_and_logprobs():
    trace = GenerationTrace()
    assert trace.mean_logprob is None and trace.decode_ms() == 0.0
    trace.record("Fresnel", 2, [-0.5, -1.5])
    time.sleep(0.01)
    trace.record(" [1].", 2, [-1.0, float("-inf")])  # a non-finite logprob says nothing about confidence
    trace.record("", 0, None)
    assert trace.text == "Fresnel [1]."
    assert trace.num_completion_tokens == 4
    assert math.isclose(trace.mean_logprob, -1.0)
    assert trace.decode_ms() >= 10.0
    assert trace.ttft_ms() == (trace.first_token_at - trace.queued_at) * 1e3  # frozen once the first token came


def test_ttft_of_an_unfinished_prefill_keeps_growing():
    trace = GenerationTrace()
    first = trace.ttft_ms()
    time.sleep(0.005)
    assert trace.ttft_ms() >= first + 5.0
