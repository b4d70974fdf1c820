"""RAG-style benchmark prompts: a Python reference passage as the source, a question, chat-templated.

The passages come from `pydoc_data.topics` (shipped with every Python), so every machine builds the
same prompts. Each prompt is cut to a target token count with the benchmarked model's tokenizer.
"""

from __future__ import annotations

from pydoc_data.topics import topics
from typing import Protocol

SYSTEM_PROMPT = (
    "Answer the question using only the source below. If the source does not say, answer that you do not know."
)
PASSAGE_CHARS = 2000  # a window of this many characters fills a 300-token prompt with room to spare


class PromptTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...


def passages() -> list[tuple[str, str]]:
    """(topic, text) windows of the reference, in a fixed order; every window is a distinct source."""
    return [
        (name, text[start : start + PASSAGE_CHARS])
        for name, text in sorted(topics.items())
        for start in range(0, len(text) - PASSAGE_CHARS + 1, PASSAGE_CHARS)
    ]


def rag_prompt(tokenizer: PromptTokenizer, passage: str, question: str, num_tokens: int) -> list[int]:
    """Token ids of a chat prompt (system, source + question) about `num_tokens` long."""

    def render(source: str) -> list[int]:
        user = f"Source:\n{source}\n\nQuestion: {question}"
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    budget = num_tokens - len(render(""))
    if budget <= 0:
        raise ValueError(f"a {num_tokens}-token prompt leaves no room for a source after the template")
    return render(tokenizer.decode(tokenizer.encode(passage)[:budget]))


def rag_prompts(tokenizer: PromptTokenizer, count: int, num_tokens: int, offset: int = 0) -> list[list[int]]:
    """`count` prompts, each on a different passage (starting at passage `offset`)."""
    chosen = passages()[offset : offset + count]
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} reference passages from offset {offset}, {count} requested")
    return [
        rag_prompt(tokenizer, text, f"What does the reference say about {name}?", num_tokens) for name, text in chosen
    ]


def shared_prefix_pairs(
    tokenizer: PromptTokenizer, count: int, num_tokens: int, offset: int
) -> list[tuple[list[int], list[int]]]:
    """Pairs of prompts with the same system prompt and source but different questions."""
    pairs = []
    for name, text in passages()[offset : offset + count]:
        first = rag_prompt(tokenizer, text, f"What does the reference say about {name}?", num_tokens)
        second = rag_prompt(tokenizer, text, f"Summarise the rules on {name} in one sentence.", num_tokens)
        pairs.append((first, second))
    return pairs
