"""LLMEngine on tiny random-weight models: transformers as the oracle, then the scheduler's promises
(prefix caching, preemption, joining mid-decode, stops, aborts, deadlines, overload, bad input)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from ragjet.llm.engine.errors import EngineOverloadedError, PromptTooLongError
from ragjet.llm.engine.llm_engine import EngineConfig, LLMEngine
from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.sampling_params import SamplingParams

PROMPTS = [[5, 17, 99, 42], [300, 7], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], [64] * 9]
GREEDY = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype=torch.float32)


def engine_for(loaded: LoadedModel, **config: object) -> LLMEngine:
    return LLMEngine(loaded, EngineConfig(**{"max_model_len": 256, "block_size": 4, **config}))  # type: ignore[arg-type]


def alone(loaded: LoadedModel, prompt: list[int], params: SamplingParams = GREEDY) -> list[int]:
    return engine_for(loaded).generate([prompt], params)[0].token_ids


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_batched_greedy_matches_transformers_generate(tiny_model_dirs: dict[str, Path], arch: str) -> None:
    from transformers import AutoModelForCausalLM

    loaded = load_model(str(tiny_model_dirs[arch]), device="cpu", dtype=torch.float32)
    outputs = engine_for(loaded).generate(PROMPTS, GREEDY)
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[arch]).eval()
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        with torch.inference_mode():
            expected = hf.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert out.token_ids == expected[0, len(prompt) :].tolist()
        assert out.finish_reason == "length" and out.num_prompt_tokens == len(prompt)


def test_a_repeated_prefix_is_served_from_the_cache(llama: LoadedModel) -> None:
    engine = engine_for(llama)
    prompt = list(range(40, 70))  # 30 tokens: 7 full blocks of 4 reusable
    first = engine.generate([prompt], GREEDY)[0]
    second = engine.generate([prompt], GREEDY)[0]
    assert first.num_cached_tokens == 0 and second.num_cached_tokens == 28
    assert second.token_ids == first.token_ids
    stats = engine.stats()
    assert stats.prefix_cache_hits == 7 and stats.num_used_blocks == 0


def test_prompts_prefilled_in_chunks_give_their_unchunked_outputs(llama: LoadedModel) -> None:
    long_prompts = [list(range(40, 90)), list(range(40, 70)) + [7, 8, 9], *PROMPTS]  # sharing a 30-token prefix
    engine = engine_for(llama, max_num_batched_tokens=12)
    outputs = engine.generate(long_prompts, GREEDY)
    assert [o.token_ids for o in outputs] == [alone(llama, p) for p in long_prompts]
    assert outputs[1].num_cached_tokens == 28  # the first prompt's chunks put its blocks in the cache as computed
    assert engine.stats().num_used_blocks == 0


def test_decoding_streams_advance_every_step_while_a_long_prompt_prefills(
    llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(llama, max_num_batched_tokens=8, num_speculative_tokens=0)
    forward, step_sizes = engine.model_runner.model.forward, []

    def counting_forward(input_ids: torch.Tensor, *args: object) -> torch.Tensor:
        step_sizes.append(len(input_ids))
        return forward(input_ids, *args)

    monkeypatch.setattr(engine.model_runner.model, "forward", counting_forward)
    decoding = engine.add_request(PROMPTS[0], GREEDY)
    engine.step()
    long = engine.add_request(list(range(100, 160)), GREEDY)  # 60 tokens: 8 steps of at most 7 beside the decode
    steps_before_first_token = 0
    while True:
        outputs = {o.request_id: o for o in engine.step()}
        assert decoding in outputs and len(outputs[decoding].new_token_ids) >= 1
        if long in outputs:
            break
        steps_before_first_token += 1
    assert steps_before_first_token >= 60 // 7
    assert max(step_sizes) <= 8  # every forward computed its chunk only, never the rest of the prompt
    while engine.has_unfinished():
        engine.step()


def test_a_failed_forward_leaves_nothing_in_the_prefix_cache(
    llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(llama)
    prompt = list(range(40, 70))
    real_run = engine.model_runner.run

    def failing_run(*args: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(engine.model_runner, "run", failing_run)
    request = engine.add_request(prompt, GREEDY)
    with pytest.raises(RuntimeError, match="injected"):
        engine.step()  # the prompt's blocks were handed out and hashed, but no K/V was written
    engine.abort_request(request)
    monkeypatch.setattr(engine.model_runner, "run", real_run)
    (retry,) = engine.generate([prompt], GREEDY)
    assert retry.num_cached_tokens == 0  # never served from blocks the failed pass did not fill
    assert retry.token_ids == alone(llama, prompt)
    assert engine.generate([prompt], GREEDY)[0].num_cached_tokens == 28  # the successful pass's blocks do hit


def test_preempted_sequences_produce_the_same_tokens(llama: LoadedModel) -> None:
    bytes_per_block = 2 * 2 * 4 * 2 * 16 * 4  # k+v, 2 layers, 4 tokens, 2 kv heads, head_dim 16, fp32
    engine = engine_for(
        llama, kv_cache_memory_gb=30 * bytes_per_block / 2**30, enable_prefix_caching=False, max_model_len=64
    )
    assert engine.stats().num_total_blocks == 30
    outputs = engine.generate(PROMPTS, GREEDY)  # ~60 blocks wanted at full length: someone is preempted
    assert engine.stats().num_preemptions > 0
    assert [o.token_ids for o in outputs] == [alone(llama, p) for p in PROMPTS]


def test_a_request_joining_mid_decode_gets_its_solo_output(llama: LoadedModel) -> None:
    engine = engine_for(llama)
    first = engine.add_request(PROMPTS[0], GREEDY)
    for _ in range(5):
        engine.step()
    second = engine.add_request(PROMPTS[2], GREEDY)
    final = {}
    while engine.has_unfinished():
        final.update({o.request_id: o for o in engine.step() if o.finished})
    assert final[first].token_ids == alone(llama, PROMPTS[0])
    assert final[second].token_ids == alone(llama, PROMPTS[2])


def test_streamed_deltas_add_up_and_stop_rules_apply(llama: LoadedModel) -> None:
    engine = engine_for(llama)
    reference = engine.generate([PROMPTS[1]], GREEDY)[0]
    request = engine.add_request(PROMPTS[1], GREEDY)
    deltas = []
    while engine.has_unfinished():
        deltas += [o for o in engine.step() if o.request_id == request]
    assert "".join(d.new_text for d in deltas) == reference.text
    assert [t for d in deltas for t in d.new_token_ids] == reference.token_ids

    stop_token = reference.token_ids[3]
    out = engine.generate([PROMPTS[1]], SamplingParams(temperature=0.0, max_tokens=32, stop_token_ids=(stop_token,)))[0]
    assert (
        out.finish_reason == "stop"
        and out.token_ids == reference.token_ids[: reference.token_ids.index(stop_token) + 1]
    )

    stop = reference.text[len(reference.text) // 2 :][:3]
    cut = engine.generate([PROMPTS[1]], SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True, stop=[stop]))[0]
    assert cut.finish_reason == "stop" and cut.text == reference.text[: reference.text.index(stop)]


def test_seeded_sampling_is_reproducible_and_logprobs_are_the_models(llama: LoadedModel) -> None:
    engine = engine_for(llama)
    params = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, max_tokens=16, seed=7, ignore_eos=True, logprobs=True)
    a, b = engine.generate([PROMPTS[0], PROMPTS[0]], params)
    assert a.token_ids == b.token_ids
    logprobs = streamed_logprobs(engine, PROMPTS[0], params)
    assert len(logprobs) == 16 and all(lp <= 0 for lp in logprobs) and logprobs[-1] == pytest.approx(a.logprobs[0])
    other = engine.generate([PROMPTS[0]], SamplingParams(**{**_fields(params), "seed": 8}))[0]
    assert other.token_ids != a.token_ids
    top1 = engine.generate([PROMPTS[0]], SamplingParams(temperature=1.0, top_k=1, max_tokens=16, ignore_eos=True))[0]
    assert top1.token_ids == alone(llama, PROMPTS[0], SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True))


def test_repetition_penalty_changes_a_repetitive_greedy_output(llama: LoadedModel) -> None:
    plain = alone(llama, PROMPTS[3])
    penalised = alone(llama, PROMPTS[3], SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True,
                                                        repetition_penalty=1.8))  # fmt: skip
    assert len(set(penalised)) > len(set(plain))


def test_abort_and_deadline_free_their_blocks(llama: LoadedModel) -> None:
    engine = engine_for(llama)
    request = engine.add_request(PROMPTS[2], GREEDY)
    engine.step()
    assert engine.stats().num_used_blocks > 0
    engine.abort_request(request)
    engine.abort_request("never-seen")  # a no-op
    assert engine.stats().num_used_blocks == 0 and not engine.has_unfinished()

    engine.add_request(PROMPTS[2], SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True, deadline_s=0.05))
    outputs = engine.step()  # admitted and running
    time.sleep(0.06)  # past its deadline with most tokens still to go, however fast the steps are
    while engine.has_unfinished():
        outputs += engine.step()
    assert outputs[-1].finish_reason == "timeout" and outputs[-1].finished
    assert engine.stats().num_used_blocks == 0


def test_bad_requests_are_refused_clearly(llama: LoadedModel) -> None:
    engine = engine_for(llama, max_num_seqs=1, max_waiting=2)
    with pytest.raises(ValueError, match="prompt must not be empty"):
        engine.add_request([], GREEDY)
    with pytest.raises(PromptTooLongError, match="context window of 256 tokens"):
        engine.add_request([5] * 300, GREEDY)
    engine.add_request(PROMPTS[0], GREEDY, request_id="same")
    with pytest.raises(ValueError, match="'same' is already in use"):
        engine.add_request(PROMPTS[0], GREEDY, request_id="same")
    for _ in range(2):  # with the first: one free running slot + two waiting
        engine.add_request(PROMPTS[0], GREEDY)
    with pytest.raises(EngineOverloadedError, match="overloaded"):
        engine.add_request(PROMPTS[0], GREEDY)


def streamed_logprobs(engine: LLMEngine, prompt: list[int], params: SamplingParams) -> list[float]:
    """Each output carries the logprobs of its new tokens; a stream's add up to one per token."""
    request = engine.add_request(prompt, params)
    logprobs: list[float] = []
    while engine.has_unfinished():
        logprobs += [lp for o in engine.step() if o.request_id == request for lp in o.logprobs or []]
    return logprobs


def _fields(params: SamplingParams) -> dict[str, object]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}
