"""The model's tokenizer: a ``tokenizers.Tokenizer`` plus its chat template and stop tokens.

Chat templates are jinja2 from the model files (tokenizer_config.json, chat_template.jinja or GGUF
``tokenizer.chat_template``), rendered in a sandbox because they come with downloaded models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import tokenizers
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Used when a model ships no template: the format SmolLM2, Qwen and many fine-tunes were trained on.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatTemplateError(ValueError):
    """The model's chat template rejected the messages or could not be compiled."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


class Tokenizer:
    """Text <-> token ids for one model.

    Args:
        backend: the ``tokenizers.Tokenizer`` (BPE, with its normaliser, pre-tokeniser and decoder).
        chat_template: jinja2 source, or None for ChatML.
        eos_token_ids: every id that ends a generation (the tokenizer's own end-of-sequence token
            first, which templates see as ``eos_token``, then the model config's and generation_config's).
        bos_token_id: prepended by ``encode(add_special_tokens=True)`` when the backend's post-processor
            is configured to; kept here for engines that need to know it.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        chat_template: str | None,
        eos_token_ids: Iterable[int],
        bos_token_id: int | None,
    ):
        self.backend = backend
        self.chat_template = chat_template
        ordered = list(dict.fromkeys(eos_token_ids))
        self.eos_token_ids = frozenset(ordered)
        self.eos_token_id = ordered[0] if ordered else None  # the primary one, templates' ``eos_token``
        self.bos_token_id = bos_token_id

    @classmethod
    def from_hf_dir(cls, directory: Path, extra_eos_ids: Iterable[int] = ()) -> Tokenizer:
        """Read tokenizer.json, tokenizer_config.json and chat_template.jinja from an HF model directory.

        Raises FileNotFoundError naming the directory when tokenizer.json is missing.
        """
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no tokenizer.json (only fast tokenizers are supported)")
        backend = tokenizers.Tokenizer.from_file(str(path))
        config = _read_json(directory / "tokenizer_config.json")
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        jinja_file = directory / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        eos_id = _token_id(backend, config.get("eos_token"))
        eos = ([] if eos_id is None else [eos_id]) + list(extra_eos_ids)
        return cls(backend, template, eos, _token_id(backend, config.get("bos_token")))

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; special tokens written in the text (``<|im_start|>``) map to their ids."""
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        return _token_id(self.backend, token)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render ``[{"role": ..., "content": ...}, ...]`` into the prompt text the model was tuned on.

        Raises ChatTemplateError when the template raises (e.g. roles out of order) or does not compile.
        """
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._token_text(self.bos_token_id),
                eos_token=self._token_text(self.eos_token_id),
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from exc

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)

    @cached_property
    def _template(self) -> jinja2.Template:
        # trim_blocks/lstrip_blocks: the whitespace rules HF renders templates with.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            return env.from_string(self.chat_template or CHATML_TEMPLATE)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from exc

    def _token_text(self, token_id: int | None) -> str:
        return "" if token_id is None else str(self.backend.id_to_token(token_id) or "")


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas whose concatenation equals ``decode(all ids)``.

    Text is emitted only once it is stable: a token that ends inside a multi-byte UTF-8 character, or
    whose rendering depends on its left neighbour (SentencePiece's leading space), is held back until
    the next token settles it. Each push decodes a short window, not the whole sequence.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0  # window start: context that makes the next token's text well-formed
        self._read_offset = 0  # ids up to here have been emitted

    def push(self, token_id: int) -> str:
        """Add one generated token; return the newly stable text (possibly "")."""
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        emitted = decode(self._ids[self._prefix_offset : self._read_offset])
        text = decode(self._ids[self._prefix_offset :])
        if len(text) <= len(emitted) or text.endswith("\ufffd"):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return text[len(emitted) :]

    def flush(self) -> str:
        """Whatever is still held back at the end of generation (an incomplete character decodes as U+FFFD)."""
        emitted = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._tokenizer.decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(emitted) :]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _token_id(backend: tokenizers.Tokenizer, token: object) -> int | None:
    """Id of a token given as text or as HF's AddedToken dict ``{"content": ...}``."""
    if isinstance(token, dict):
        token = token.get("content")
    if not isinstance(token, str):
        return None
    found = backend.token_to_id(token)
    return None if found is None else int(found)
