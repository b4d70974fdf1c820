"""LLMEngine: requests in, streamed outputs out, one `step()` (one forward pass) at a time.

`step` schedules a mixed batch (decodes of running sequences plus newly admitted prefills), runs it,
appends each sampled token, applies the stop rules and returns one RequestOutput per sequence that
advanced or finished. Driven synchronously by `generate`, or by AsyncLLMEngine's thread for serving.

Context window: a prompt that leaves no room for even one new token raises PromptTooLongError;
otherwise generation stops with finish_reason "length" at max_tokens or at the window, whichever
comes first (as OpenAI-compatible servers clamp, rather than refuse, a generous max_tokens).
"""

from __future__ import annotations

import time
import uuid

import torch
from rich.progress import Progress

from ragjet.device import is_out_of_memory
from ragjet.llm.engine.block_manager import BlockAllocator
from ragjet.llm.engine.chunk_cache import ChunkKVCache
from ragjet.llm.engine.chunk_reuse import ChunkReuse
from ragjet.llm.engine.config import EngineConfig
from ragjet.llm.engine.errors import PromptTooLongError, RequestFailedError
from ragjet.llm.engine.model_runner import ModelRunner
from ragjet.llm.engine.outputs import EngineStats, RequestOutput
from ragjet.llm.engine.scheduler import Scheduler, SchedulerConfig
from ragjet.llm.engine.sequence import Sequence
from ragjet.llm.engine.spec_decode import accepted_tokens
from ragjet.llm.loaders import LoadedModel
from ragjet.llm.sampling_params import SamplingParams
from ragjet.llm.segments import ChunkSpan, PromptSegments

EnginePrompt = str | list[int] | PromptSegments


def model_identity(loaded: LoadedModel, dtype: torch.dtype) -> str:
    """What cached K/V depends on: the weights file (path, size, modification time) and the compute dtype."""
    stat = loaded.source.stat()
    return f"{loaded.source}:{stat.st_size}:{stat.st_mtime_ns}:{dtype}"

__all__ = ["EngineConfig", "LLMEngine"]


class LLMEngine:
    def __init__(self, loaded: LoadedModel, config: EngineConfig | None = None):
        self.config = config = config or EngineConfig()
        self.tokenizer = loaded.tokenizer
        self.max_model_len = min(config.max_model_len, loaded.config.max_position_embeddings)
        self.model_runner = ModelRunner(loaded, config, config.max_num_seqs * self.max_model_len * 2)
        self.allocator = BlockAllocator(self.model_runner.num_blocks, config.block_size, config.enable_prefix_caching)
        scheduler_config = SchedulerConfig(
            config.max_num_seqs, config.max_num_batched_tokens, config.max_waiting,
            config.num_speculative_tokens, config.max_speculative_seqs,
        )  # fmt: skip
        self.chunk_cache: ChunkKVCache | None = None
        reuse = None
        if config.chunk_reuse == "blend":
            budget = int(config.chunk_cache_gb * 2**30)
            self.chunk_cache = ChunkKVCache(model_identity(loaded, self.model_runner.dtype), budget)
            reuse = ChunkReuse(self.chunk_cache, config.chunk_recompute_tokens, config.block_size)
        self.scheduler = Scheduler(scheduler_config, self.allocator, reuse)
        self._seqs: dict[str, Sequence] = {}
        self._generators: dict[str, torch.Generator] = {}
        self._num_draft_tokens = self._num_accepted_draft_tokens = 0

    def add_request(self, prompt: EnginePrompt, params: SamplingParams, request_id: str | None = None) -> str:
        """Queue a request. Raises ValueError (empty prompt, id in use), PromptTooLongError, EngineOverloadedError.

        A `PromptSegments` prompt marks its retrieved chunks: in blend mode their K/V may come from the chunk
        cache; otherwise it is the same as its text.
        """
        ids, spans = self._tokenize(prompt)
        if not ids:
            raise ValueError("prompt must not be empty")
        capacity = min(self.max_model_len, self.allocator.num_blocks * self.allocator.block_size)
        if len(ids) >= capacity:
            raise PromptTooLongError(len(ids), params.max_tokens, capacity)
        request_id = request_id or uuid.uuid4().hex
        if request_id in self._seqs:
            raise ValueError(f"request id {request_id!r} is already in use")
        seq = Sequence(
            request_id, ids, len(ids), params, self.tokenizer.incremental_decoder(),
            max_len=min(capacity, len(ids) + params.max_tokens),
            deadline=None if params.deadline_s is None else time.monotonic() + params.deadline_s,
            chunk_spans=spans,
        )  # fmt: skip
        self.scheduler.add(seq)
        self._seqs[request_id] = seq
        if params.seed is not None and not params.is_greedy:
            self._generators[request_id] = torch.Generator(self.model_runner.device).manual_seed(params.seed)
        return request_id

    def step(self) -> list[RequestOutput]:
        batch, timed_out = self.scheduler.schedule()
        outputs = [self._finish_output(seq) for seq in timed_out]
        if batch:
            try:
                tokens, logprobs = self.model_runner.run(batch, self._generators)
            except BaseException as exc:
                self.allocator.forget_uncomputed()
                if is_out_of_memory(exc):
                    raise self._drop_largest(batch, exc, outputs) from exc
                raise
            self.allocator.mark_computed()
            for i, (seq, predicted) in enumerate(zip(batch, tokens, strict=True)):
                if seq.is_prefill_chunk:  # part of the prompt computed, its last token not yet: nothing to emit
                    seq.num_computed_tokens += seq.num_scheduled_tokens
                    continue
                if seq.export_spans:
                    self._export_chunks(seq)
                seq.pending_imports, seq.compute_positions = [], []
                accepted = accepted_tokens(seq.draft_ids, predicted)
                self._num_draft_tokens += len(seq.draft_ids)
                self._num_accepted_draft_tokens += len(accepted) - 1
                seq.draft_ids = []
                seq.num_computed_tokens = seq.num_tokens + len(accepted) - 1  # K/V of rejected drafts is stale
                outputs.append(self._advance(seq, accepted, None if logprobs is None else logprobs[i]))
        return outputs

    def _tokenize(self, prompt: EnginePrompt) -> tuple[list[int], list[ChunkSpan]]:
        if isinstance(prompt, PromptSegments):
            if self.chunk_cache is None:
                return self.tokenizer.encode(prompt.text), []
            return prompt.tokenize(self.tokenizer.encode)
        return (self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)), []

    def _export_chunks(self, seq: Sequence) -> None:
        """The prompt is computed: store the chunks the cache lacked (blend mode's fill at first use)."""
        assert self.chunk_cache is not None
        for span in seq.export_spans:
            keys, values, num_bytes = self.model_runner.read_chunk(seq, span)
            self.chunk_cache.put(seq.token_ids[span.start : span.end], span.tag, keys, values, span.start, num_bytes)
        seq.export_spans = []

    def forget_chunks(self, tags: list[str]) -> int:
        """Drop cached chunk K/V stored under ``tags`` (chunk ids of a deleted or re-ingested document)."""
        return 0 if self.chunk_cache is None else self.chunk_cache.invalidate(tags)

    def _drop_largest(self, batch: list[Sequence], exc: BaseException, outputs: list[RequestOutput]) -> Exception:
        """After an out-of-memory step: finish the sequence that brought the most tokens (then the longest), keep
        the others for the next step (nothing of theirs was computed: they are scheduled again as they were)."""
        victim = max(batch, key=lambda s: (s.num_scheduled_tokens + len(s.draft_ids), s.num_tokens))
        for seq in batch:
            seq.draft_ids, seq.num_scheduled_tokens = [], 0
        self.scheduler.finish(victim, "abort")
        self._seqs.pop(victim.request_id, None)
        self._generators.pop(victim.request_id, None)
        return RequestFailedError(victim.request_id, exc, outputs)

    def close(self) -> None:
        """Release what outlives a step: tensor-parallel followers wait on this engine's model runner."""
        self.model_runner.close()

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def abort_request(self, request_id: str) -> None:
        seq = self._seqs.pop(request_id, None)
        if seq is not None:
            self.scheduler.finish(seq, "abort")
            self._generators.pop(request_id, None)

    def generate(
        self, prompts: list[EnginePrompt], params: SamplingParams | list[SamplingParams], progress: bool = False
    ) -> list[RequestOutput]:
        """Run prompts to completion together (continuous batching); final outputs in input order."""
        all_params = params if isinstance(params, list) else [params] * len(prompts)
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, all_params, strict=True)]
        final: dict[str, RequestOutput] = {}
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("generating", total=len(ids))
            while self.has_unfinished():
                for out in self.step():
                    if out.finished:
                        final[out.request_id] = out
                        bar.advance(task)
        return [final[i] for i in ids]

    def stats(self) -> EngineStats:
        a = self.allocator
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            num_used_blocks=a.num_blocks - a.num_free_blocks,
            num_free_blocks=a.num_free_blocks,
            num_total_blocks=a.num_blocks,
            prefix_cache_queries=a.num_queries,
            prefix_cache_hits=a.num_hits,
            num_preemptions=self.scheduler.num_preemptions,
            num_draft_tokens=self._num_draft_tokens,
            num_accepted_draft_tokens=self._num_accepted_draft_tokens,
            memory=self.model_runner.memory.as_dict(),
            **self._chunk_cache_stats(),
        )

    def _chunk_cache_stats(self) -> dict[str, int]:
        if self.chunk_cache is None:
            return {}
        c = self.chunk_cache.stats
        return {"chunk_cache_lookups": c.num_lookups, "chunk_cache_hits": c.num_hits,
                "chunk_cache_entries": c.num_entries, "chunk_cache_bytes": c.num_bytes}  # fmt: skip

    def _advance(self, seq: Sequence, tokens: list[int], logprobs: list[float] | None) -> RequestOutput:
        """Append a step's tokens one by one, applying the stop rules after each."""
        reason, stop_string = None, False
        for i, token in enumerate(tokens):
            seq.token_ids.append(token)
            if logprobs is not None and seq.params.logprobs:
                seq.logprobs.append(logprobs[i])
            reason, stop_string = self._stop_reason(seq, token)
            if reason is not None:
                break
        if reason is None:
            return self._output(seq)
        if not stop_string:
            seq.text += seq.decoder.flush()  # text held back for an incomplete character
        self.scheduler.finish(seq, reason)
        return self._finish_output(seq)

    def _stop_reason(self, seq: Sequence, token: int) -> tuple[str | None, bool]:
        """(finish reason or None, whether a stop string ended it) once ``token`` is appended."""
        p = seq.params
        if (token in self.tokenizer.eos_token_ids and not p.ignore_eos) or token in p.stop_token_ids:
            return "stop", False
        seq.text += seq.decoder.push(token)
        if self._cut_at_stop_string(seq):
            return "stop", True
        return ("length" if seq.num_tokens >= seq.max_len else None), False

    def _cut_at_stop_string(self, seq: Sequence) -> bool:
        """Cut the text at the first stop string (which is not returned); search only where one could start."""
        longest = max((len(s) for s in seq.params.stop), default=0)
        start = max(0, seq.num_emitted_chars - longest)
        hits = [i for i in (seq.text.find(s, start) for s in seq.params.stop) if i >= 0]
        if hits:
            seq.text = seq.text[: min(hits)]
        return bool(hits)

    def _finish_output(self, seq: Sequence) -> RequestOutput:
        self._seqs.pop(seq.request_id, None)
        self._generators.pop(seq.request_id, None)
        return self._output(seq)

    def _output(self, seq: Sequence) -> RequestOutput:
        # While a stop string may still be completing, hold back text that could be its beginning.
        held = 0 if seq.is_finished else max((len(s) for s in seq.params.stop), default=1) - 1
        visible = max(seq.num_emitted_chars, len(seq.text) - held)
        new_text, seq.num_emitted_chars = seq.text[seq.num_emitted_chars : visible], visible
        outputs = seq.output_ids  # a fresh list: the output's own copy
        new_ids, seq.num_emitted_tokens = outputs[seq.num_emitted_tokens :], len(outputs)
        return RequestOutput(
            request_id=seq.request_id,
            new_token_ids=new_ids,
            new_text=new_text,
            token_ids=outputs,
            text=seq.text if seq.is_finished else seq.text[:visible],
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            logprobs=seq.logprobs[-len(new_ids) :] if seq.params.logprobs and new_ids else None,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_tokens=seq.num_cached_tokens,
            num_reused_tokens=seq.num_reused_tokens,
        )
