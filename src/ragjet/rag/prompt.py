"""Prompt assembly: retrieved chunks become numbered sources that fit the generator's token budget.

The budget is exact: every candidate prompt is rendered through the generator's chat template and
counted with its tokenizer, so `prompt tokens + max_tokens <= max_model_len` always holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from ragjet.llm.segments import PromptSegments, split_at_chunks
from ragjet.rag.types import Citation

NEAR_DUPLICATE_JACCARD = 0.9  # word-shingle overlap above which two chunks say the same thing
SHINGLE_WORDS = 3
TRUNCATION_MARK = " …"
MIN_TRUNCATED_WORDS = 16  # a shorter remnant of a source is dropped rather than cited


class RetrievedChunk(Protocol):
    """What the builder reads from a search hit (ragjet.retrieve.SearchHit satisfies it)."""

    @property
    def chunk_id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def source(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def heading(self) -> str: ...
    @property
    def page(self) -> int | None: ...


class ChatTokenizer(Protocol):
    """The generator's view of text: its chat template and its token count (special tokens included)."""

    def format_chat(self, messages: list[dict[str, str]]) -> str: ...
    def count_tokens(self, text: str) -> int: ...


class PromptBudgetError(ValueError):
    """Even the prompt without any source exceeds the budget (question too long or max_tokens too large)."""


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    text: str  # chat-templated prompt, ready for the generator
    num_tokens: int  # counted with the generator's tokenizer
    citations: list[Citation]  # numbered 1..n in prompt order
    num_dropped: int  # distinct chunks left out because the budget was spent
    is_truncated: bool  # the last source was cut to fit

    def segments(self) -> PromptSegments:
        """The prompt with each whole cited chunk's text marked (by chunk id), for reuse of its K/V; a truncated
        source is not the chunk any more and stays plain text."""
        return split_at_chunks(self.text, [(c.chunk_id, c.text.strip()) for c in self.citations])


def _normalize(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    if len(words) < SHINGLE_WORDS:
        return {tuple(words)}
    return {tuple(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def _jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedupe(hits: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
    """Best-scored first; drops repeats of a chunk id and chunks whose text nearly equals a kept one."""
    kept: list[RetrievedChunk] = []
    seen_ids: set[str] = set()
    kept_shingles: list[set[tuple[str, ...]]] = []
    for hit in sorted(hits, key=lambda h: h.score, reverse=True):
        if hit.chunk_id in seen_ids:
            continue
        shingles = _shingles(_normalize(hit.text).split())
        if any(_jaccard(shingles, other) >= NEAR_DUPLICATE_JACCARD for other in kept_shingles):
            continue
        seen_ids.add(hit.chunk_id)
        kept.append(hit)
        kept_shingles.append(shingles)
    return kept


def source_header(number: int, hit: RetrievedChunk) -> str:
    """`[n] source, page p — title > heading`: what the model (and the reader) sees above a chunk."""
    where = hit.source + (f", page {hit.page}" if hit.page is not None else "")
    what = " > ".join(part for part in (hit.title, hit.heading) if part and part != hit.source)
    return f"[{number}] {where}" + (f" — {what}" if what else "")


def user_message(question: str, blocks: Sequence[str]) -> str:
    sources = "\n\n".join(blocks) if blocks else "(no sources found)"
    return f"Sources:\n\n{sources}\n\nQuestion: {question.strip()}"


class PromptBuilder:
    """Turns a question and search hits into a chat prompt with numbered, cited sources."""

    def __init__(self, tokenizer: ChatTokenizer, system_prompt: str, max_model_len: int):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.max_model_len = max_model_len

    def render(self, question: str, blocks: Sequence[str]) -> str:
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user_message(question, blocks)},
        ]
        return self.tokenizer.format_chat(messages)

    def build(self, question: str, hits: Sequence[RetrievedChunk], max_tokens: int, max_chunks: int) -> BuiltPrompt:
        """Fit the best `max_chunks` distinct hits into `max_model_len - max_tokens` prompt tokens.

        Sources are added best first; the first one that does not fit whole is truncated at a word
        boundary if at least MIN_TRUNCATED_WORDS fit, and every lower-ranked source is dropped.
        Raises PromptBudgetError when the prompt without sources already exceeds the budget.
        """
        budget = self.max_model_len - max_tokens
        text = self.render(question, [])
        num_tokens = self.tokenizer.count_tokens(text)
        if num_tokens > budget:
            raise PromptBudgetError(
                f"the question needs {num_tokens} prompt tokens but only {budget} are left "
                f"(max_model_len {self.max_model_len} - max_tokens {max_tokens})"
            )
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        candidates = dedupe(hits)[:max_chunks]
        blocks: list[str] = []
        chosen: list[RetrievedChunk] = []
        is_truncated = False
        for hit in candidates:
            block = f"{source_header(len(blocks) + 1, hit)}\n{hit.text.strip()}"
            fitted = self._fit(question, blocks, block, budget)
            if fitted is None:
                break
            blocks.append(fitted[0])
            chosen.append(hit)
            text, num_tokens = fitted[1], fitted[2]
            if fitted[0] != block:
                is_truncated = True
                break
        citations = [_citation(i + 1, hit) for i, hit in enumerate(chosen)]
        return BuiltPrompt(text, num_tokens, citations, len(candidates) - len(chosen), is_truncated)

    def _fit(self, question: str, blocks: list[str], block: str, budget: int) -> tuple[str, str, int] | None:
        """The block (whole, else its longest fitting word-prefix) with the prompt text and its count."""
        text = self.render(question, [*blocks, block])
        num_tokens = self.tokenizer.count_tokens(text)
        if num_tokens <= budget:
            return block, text, num_tokens
        header, _, body = block.partition("\n")
        cuts = [m.start() for m in re.finditer(r"\s+", body)]
        best: tuple[str, str, int] | None = None
        lo, hi = MIN_TRUNCATED_WORDS - 1, len(cuts) - 1  # cuts[i] keeps i + 1 words
        while lo <= hi:  # the longest word-prefix of the body that still fits
            mid = (lo + hi) // 2
            candidate = f"{header}\n{body[: cuts[mid]]}{TRUNCATION_MARK}"
            text = self.render(question, [*blocks, candidate])
            num_tokens = self.tokenizer.count_tokens(text)
            if num_tokens <= budget:
                best, lo = (candidate, text, num_tokens), mid + 1
            else:
                hi = mid - 1
        return best


def _citation(number: int, hit: RetrievedChunk) -> Citation:
    return Citation(
        number=number,
        chunk_id=hit.chunk_id,
        source=hit.source,
        title=hit.title,
        heading=hit.heading,
        page=hit.page,
        score=float(hit.score),
        text=hit.text,
    )


CITATION_PATTERN = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def cited_numbers(answer: str) -> set[int]:
    """Source numbers an answer refers to: [2], [1][3], [1, 3] and [1; 3] all count."""
    return {int(n) for group in CITATION_PATTERN.findall(answer) for n in re.findall(r"\d+", group)}


def mark_cited(citations: list[Citation], answer: str) -> list[Citation]:
    numbers = cited_numbers(answer)
    return [replace(c, cited=c.number in numbers) for c in citations]
