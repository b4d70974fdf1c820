"""Tokenizer: SmolLM2's rebuilt from GGUF metadata (round trips, special tokens, merges, chat template),
incremental decoding against whole-sequence decoding, chat-template failures, HF directory stop tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

from ragjet.llm.loaders import LoadedModel, load_model
from ragjet.llm.tokenizer import ChatTemplateError, Tokenizer

VARIED = [
    "Hello, world! It's 2024-05-17; the answer is 42.",
    "def f(x):\n    return x ** 2  # squares\n\n\tTabs\tand   spaces   ",
    "Ünïcödé, 日本語のテキスト, Ελληνικά, emoji 🙂👍🏽 and a zero-width joiner 👨‍👩‍👧.",
    "<|im_start|>user\nWhat is RAG?<|im_end|>\n",
    "",
]


@pytest.fixture(scope="module")
def smol(smollm2: LoadedModel) -> Tokenizer:
    return smollm2.tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("text", VARIED)
def test_smollm2_round_trips_text(smol: Tokenizer, text: str) -> None:
    assert smol.decode(smol.encode(text), skip_special_tokens=False) == text


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
# SmolLM2's vocabulary has no token for a few bytes (some control characters, UTF-8 lead bytes of planes
# 4 and up): text using them cannot round-trip with the original tokenizer either.
@given(text=st.text(st.characters(exclude_categories=("Cc", "Cs"), max_codepoint=0x3FFFF), max_size=40))
def test_smollm2_round_trips_any_text(smol: Tokenizer, text: str) -> None:
    assert smol.decode(smol.encode(text), skip_special_tokens=False) == text


@pytest.mark.slow
def test_smollm2_special_tokens_and_merges(smol: Tokenizer) -> None:
    assert smol.encode("<|endoftext|><|im_start|><|im_end|>") == [0, 1, 2]
    assert smol.eos_token_ids == {2} and smol.bos_token_id == 1 and smol.vocab_size == 49152
    assert len(smol.encode(" Paris")) == 1 and len(smol.encode("The capital of France")) == 4
    assert len(smol.encode("2024")) == 4  # the "smollm" pre-tokenizer splits digits one by one
    assert smol.decode(smol.encode("<|im_start|>hi<|im_end|>")) == "hi"  # specials skipped by default


@pytest.mark.slow
def test_smollm2_chat_template(smol: Tokenizer) -> None:
    prompt = smol.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = smol.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], add_generation_prompt=False
    )
    assert with_system == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tokenizer.incremental_decoder()
    pieces = [decoder.push(i) for i in ids]
    return [*pieces, decoder.flush()]


@pytest.mark.slow
@pytest.mark.parametrize("text", VARIED)
def test_incremental_decoding_equals_whole_decoding(smol: Tokenizer, text: str) -> None:
    ids = smol.encode(text)
    pieces = stream(smol, ids)
    assert "".join(pieces) == smol.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.slow
def test_incremental_decoder_holds_back_incomplete_characters(smol: Tokenizer) -> None:
    ids = smol.encode("🙂")
    assert len(ids) > 1  # an emoji outside the vocabulary: one byte-level token per UTF-8 byte
    pieces = stream(smol, ids)
    assert pieces[:-2] == [""] * (len(ids) - 1) and pieces[-2] == "🙂" and pieces[-1] == ""


@pytest.mark.slow
def test_flush_returns_an_unfinished_character(smol: Tokenizer) -> None:
    decoder = smol.incremental_decoder()
    assert decoder.push(smol.encode("🙂")[0]) == ""
    assert decoder.flush() == "\ufffd"


def bare_tokenizer(template: str | None) -> Tokenizer:
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0, "<eos>": 1}, unk_token="<unk>"))
    return Tokenizer(backend, template, [1], None)


def test_missing_template_falls_back_to_chatml() -> None:
    prompt = bare_tokenizer(None).apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_template_variables_eos_and_raise_exception() -> None:
    template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}"
        "{{ messages[0]['content'] }}{{ eos_token }}"
    )
    tokenizer = bare_tokenizer(template)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}]) == "Hi<eos>"
    with pytest.raises(ChatTemplateError, match="first message must be the user"):
        tokenizer.apply_chat_template([{"role": "assistant", "content": "Hi"}])


@pytest.mark.parametrize(
    ("template", "message"),
    [("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"), ("{% for %}", "does not compile")],
)
def test_hostile_or_broken_templates_raise_chat_template_error(template: str, message: str) -> None:
    with pytest.raises(ChatTemplateError, match=message):
        bare_tokenizer(template).apply_chat_template([{"role": "user", "content": "Hi"}])


def test_hf_dir_stop_tokens_merge_tokenizer_and_generation_config(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory = shutil.copytree(tiny_llama_dir, tmp_path / "m")
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    tokenizer = load_model(str(directory)).tokenizer
    assert tokenizer.eos_token_ids == {0, 2}
    assert tokenizer.eos_token_id == 2  # tokenizer_config's eos_token (<|im_end|>) is the primary one
    assert tokenizer.bos_token_id is None
