"""Structure-aware token chunker: sections → paragraphs → sentences → token-bounded chunks.

A chunk is a contiguous slice of one section's text (nothing invented by the chunker), except that
a run of tiny sections on one page is joined into one chunk. Oversize pieces are split at the
coarsest boundary that works: paragraph, sentence, line, word, and finally token.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import groupby

from tokenizers import Encoding, Tokenizer

from ragjet.config import ChunkSettings
from ragjet.ingest.document import Chunk, Document, Section, chunk_id
from ragjet.ingest.spans import FINER_BREAKS, PARAGRAPH_BREAK, Span, cut_spans, spans_between

MIN_BUDGET = 8  # content tokens; below this a chunk cannot hold a useful sentence fragment


@dataclass(frozen=True, slots=True)
class _Atom:
    """A piece the packer never splits: a sentence, or a fragment of an oversize one."""

    start: int  # char offsets into the section text
    end: int
    num_tokens: int
    paragraph: int  # index of its paragraph within the section


class _TokenIndex:
    """Counts a section's tokens inside any char span, from one encoding of the whole section."""

    def __init__(self, text: str, encoding: Encoding) -> None:
        self.text = text
        self.starts = [start for start, _ in encoding.offsets]  # char start of every token, ascending

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        return bisect_left(self.starts, start), bisect_left(self.starts, end)

    def count(self, start: int, end: int) -> int:
        first, last = self.token_range(start, end)
        return last - first


class Chunker:
    """Split Documents into Chunks that fit the embedder's context.

    Budget: every chunk has at most ``max_tokens - num_special_tokens`` tokens, counted with the
    embedder's tokenizer *without* special tokens; ``num_special_tokens`` is what the tokenizer's
    post-processor adds (2 for BERT's [CLS] and [SEP]), so with max_tokens=256 a chunk holds at most
    254 content tokens and the embedder never truncates it.

    Structure: a chunk never spans two sections (another heading or page) unless consecutive
    sections are tiny (fewer than `min_section_tokens` each, same page) and fit in one chunk
    together; that chunk carries the first section's heading and page. Within a section, small
    paragraphs are packed together up to the budget, a paragraph that fits the budget is never
    split, and an oversize one is split at sentence, then line, then word, then token boundaries.

    Overlap: a chunk that continues a section starts with about `overlap_tokens` tokens repeated
    from the end of the previous chunk: whole sentences where they fit, else the tail of the last
    sentence from a word start. It is at most half the previous chunk, and it shrinks so that a
    following paragraph that fits the budget stays whole.

    Chunk texts are slices of the input with no added prefix; `heading` and `page` come from the
    section, `id` from `chunk_id(source, ordinal, text)`, `num_tokens` is measured on the final text.
    The tokenizer passed in is copied, not modified.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_tokens: int = 256,
        overlap_tokens: int = 32,
        min_section_tokens: int = 16,
    ) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        processor = self.tokenizer.post_processor
        self.num_special_tokens = processor.num_special_tokens_to_add(False) if processor else 0
        self.max_tokens = max_tokens
        self.budget = max_tokens - self.num_special_tokens
        if self.budget < MIN_BUDGET:
            raise ValueError(f"max_tokens={max_tokens} leaves fewer than {MIN_BUDGET} content tokens")
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError(f"overlap_tokens={overlap_tokens} must be in [0, max_tokens={max_tokens})")
        self.overlap_tokens = overlap_tokens
        self.min_section_tokens = min_section_tokens

    @classmethod
    def from_settings(cls, tokenizer: Tokenizer, settings: ChunkSettings) -> Chunker:
        return cls(tokenizer, max_tokens=settings.max_tokens, overlap_tokens=settings.overlap_tokens)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Content tokens (special tokens excluded) of each text, batch-encoded."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def split(self, doc: Document) -> list[Chunk]:
        """Chunk one document; the same document and settings always give the same chunks and ids."""
        sections = [s for s in doc.sections if s.text.strip()]
        encodings = self.tokenizer.encode_batch([s.text for s in sections], add_special_tokens=False)
        pieces: list[tuple[str, Section]] = []
        for group in self._group_tiny_sections(sections, [len(e.ids) for e in encodings]):
            first = sections[group[0]]
            if len(group) > 1:
                pieces.append(("\n\n".join(sections[i].text.strip() for i in group), first))
                continue
            index = _TokenIndex(first.text, encodings[group[0]])
            pieces.extend((first.text[a:b], first) for a, b in self._pack(index, self._atoms(index)))
        return self._finish(doc.source, pieces)

    def _group_tiny_sections(self, sections: list[Section], counts: list[int]) -> list[list[int]]:
        """Section indices to emit together: a run of tiny sections plus at most one more."""
        groups: list[list[int]] = []
        for i, section in enumerate(sections):
            group = groups[-1] if groups else []
            joinable = (
                bool(group)
                and all(counts[j] < self.min_section_tokens for j in group)
                and sections[group[0]].page == section.page
                and sum(counts[j] for j in group) + counts[i] <= self.budget
            )
            if joinable:
                group.append(i)
            else:
                groups.append([i])
        return groups

    def _atoms(self, index: _TokenIndex) -> list[_Atom]:
        """Every paragraph's sentences, each cut further until it fits the budget."""
        atoms: list[_Atom] = []
        paragraphs = cut_spans(index.text, 0, len(index.text), PARAGRAPH_BREAK)
        for paragraph, (start, end) in enumerate(paragraphs):
            for a, b in self._fit(index, start, end, level=0):
                atoms.append(_Atom(a, b, index.count(a, b), paragraph))
        return atoms

    def _fit(self, index: _TokenIndex, start: int, end: int, level: int) -> list[Span]:
        # Level 0 always cuts into sentences (the unit of packing and overlap); deeper levels only
        # cut what is still over budget.
        if level > 0 and index.count(start, end) <= self.budget:
            return [(start, end)]
        if level == len(FINER_BREAKS):
            return self._token_windows(index, start, end)
        spans: list[Span] = []
        for a, b in cut_spans(index.text, start, end, FINER_BREAKS[level]):
            spans.extend(self._fit(index, a, b, level + 1))
        return spans

    def _token_windows(self, index: _TokenIndex, start: int, end: int) -> list[Span]:
        first, last = index.token_range(start, end)
        bounds = [start, *(index.starts[i] for i in range(first + self.budget, last, self.budget)), end]
        return spans_between(index.text, bounds)

    def _pack(self, index: _TokenIndex, atoms: list[_Atom]) -> list[Span]:
        packer = _Packer(index, self.budget, self.overlap_tokens)
        for _, group in groupby(atoms, key=lambda atom: atom.paragraph):
            paragraph = list(group)
            num_tokens = sum(atom.num_tokens for atom in paragraph)
            if packer.fits(num_tokens):
                packer.add(paragraph)
            elif num_tokens <= self.budget:
                packer.break_before(num_tokens)
                packer.add(paragraph)
            else:
                for atom in paragraph:
                    if not packer.fits(atom.num_tokens):
                        packer.break_before(atom.num_tokens)
                    packer.add([atom])
        return packer.finish()

    def _finish(self, source: str, pieces: list[tuple[str, Section]]) -> list[Chunk]:
        """Measure every chunk on its final text; cut any that a non-additive tokenizer left too long."""
        fitted: list[tuple[str, int, Section]] = []
        for (text, section), num_tokens in zip(pieces, self.count_tokens([t for t, _ in pieces]), strict=True):
            if num_tokens <= self.budget:
                fitted.append((text, num_tokens, section))
            else:
                fitted.extend((part, n, section) for part, n in self._halve_until_fits(text))
        return [
            Chunk(chunk_id(source, ordinal, text), source, ordinal, text, n, section.heading, section.page)
            for ordinal, (text, n, section) in enumerate(fitted)
        ]

    def _halve_until_fits(self, text: str) -> list[tuple[str, int]]:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= self.budget:
            return [(text, len(encoding.ids))]
        starts = sorted({start for start, _ in encoding.offsets if start > 0})
        if not starts:  # one character worth more tokens than the budget: nothing left to cut
            return [(text, len(encoding.ids))]
        cut = starts[len(starts) // 2]
        halves = (text[:cut].rstrip(), text[cut:].lstrip())
        return [part for half in halves if half for part in self._halve_until_fits(half)]


class _Packer:
    """Greedy packing of one section's atoms into chunk spans, opening each new chunk with overlap."""

    def __init__(self, index: _TokenIndex, budget: int, overlap_tokens: int) -> None:
        self.index = index
        self.budget = budget
        self.overlap_tokens = overlap_tokens
        self.spans: list[Span] = []
        self.atoms: list[_Atom] = []  # the open chunk's own atoms (its overlap head excluded)
        self.head_start: int | None = None  # char start of the open chunk's overlap head
        self.num_tokens = 0  # open chunk's tokens, head included

    def fits(self, num_tokens: int) -> bool:
        return self.num_tokens + num_tokens <= self.budget

    def add(self, atoms: list[_Atom]) -> None:
        self.atoms.extend(atoms)
        self.num_tokens += sum(atom.num_tokens for atom in atoms)

    def break_before(self, next_tokens: int) -> None:
        """Close the open chunk and open the next with an overlap that leaves `next_tokens` room."""
        if not self.atoms:
            return
        previous, previous_tokens = self.atoms, self.num_tokens
        self._close()
        limit = min(self.overlap_tokens, self.budget - next_tokens, previous_tokens // 2)
        head = self._overlap(previous, limit) if limit > 0 else None
        if head is not None:
            self.head_start, self.num_tokens = head

    def finish(self) -> list[Span]:
        if self.atoms:
            self._close()
        return self.spans

    def _close(self) -> None:
        start = self.atoms[0].start if self.head_start is None else self.head_start
        self.spans.append((start, self.atoms[-1].end))
        self.atoms, self.head_start, self.num_tokens = [], None, 0

    def _overlap(self, previous: list[_Atom], limit: int) -> tuple[int, int] | None:
        """(char start, tokens) of the overlap: trailing whole atoms, else the last atom's tail."""
        start, taken = None, 0
        for atom in reversed(previous):
            if taken + atom.num_tokens > limit:
                break
            start, taken = atom.start, taken + atom.num_tokens
        if start is not None:
            return start, taken
        return self._tail(previous[-1], limit)

    def _tail(self, atom: _Atom, limit: int) -> tuple[int, int]:
        starts, text = self.index.starts, self.index.text
        first, last = self.index.token_range(atom.start, atom.end)
        begin = max(first, last - limit)
        word_start = next((k for k in range(begin, last) if starts[k] > 0 and text[starts[k] - 1].isspace()), begin)
        return starts[word_start], last - word_start
