"""Prompt-lookup speculative decoding: draft the next tokens by copying what followed the latest n-gram.

RAG answers copy spans of their retrieved chunks, so the tokens that followed the last few generated
tokens somewhere earlier in the context are often what the model says next. The scheduler appends such a
draft to a greedy sequence's step; one forward scores every draft position, and `accepted_tokens` keeps
the draft up to its first disagreement with the model's own argmax, plus the model's token there.
That is token for token what plain greedy decoding produces: exactly so in fp32, and in the served CPU
configuration (bf16, int4) for a single sequence, whose verify step attends through the same fused kernel
and multiplies by the same weights as a decode step (both tested). With several sequences a verify step's
rows can cross to the dense weights (prefill_linear.py), and at a near-tie of the top two logits the
argmax can flip, as it can between batch sizes. A step costs about one forward at batch 1 (decode reads
weights, not FLOPs), so drafts run only in small decode steps (EngineConfig). No torch here.
"""

from __future__ import annotations


def propose_draft(token_ids: list[int], max_draft: int, max_ngram: int = 3, min_ngram: int = 2) -> list[int]:
    """Up to ``max_draft`` tokens that followed the most recent earlier occurrence of the longest suffix
    (``max_ngram`` down to ``min_ngram`` tokens) of ``token_ids``; empty when no suffix recurs."""
    num_tokens = len(token_ids)
    for n in range(min(max_ngram, num_tokens - 1), min_ngram - 1, -1):
        suffix = token_ids[num_tokens - n :]
        last = suffix[-1]
        for end in range(num_tokens - 2, n - 2, -1):  # end: the last token of an earlier occurrence
            if token_ids[end] == last and token_ids[end - n + 1 : end + 1] == suffix:
                return token_ids[end + 1 : end + 1 + max_draft]
    return []


def accepted_tokens(draft: list[int], predicted: list[int]) -> list[int]:
    """The tokens a greedy step emits: ``predicted[i]`` is the model's argmax after the sequence plus
    ``draft[:i]`` (len(draft) + 1 of them); the draft is kept while it agrees, then the model's token."""
    num_accepted = 0
    while num_accepted < len(draft) and draft[num_accepted] == predicted[num_accepted]:
        num_accepted += 1
    return predicted[: num_accepted + 1]
