"""A ``tokenizers`` byte-level BPE tokenizer rebuilt from GGUF metadata (``tokenizer.ggml.*``).

GGUF stores the vocabulary, merges, token types and the name of the pre-tokenizer (``tokenizer.ggml.pre``)
that llama.cpp hard-codes; each name we accept maps to the same splitting rules in ``tokenizers``.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer

from ragjet.llm.config import UnsupportedModelError
from ragjet.llm.tokenizer import Tokenizer

# The two differ only in how digits group: up to three per piece (Llama 3) or one (Qwen2).
_SPLIT_HEAD = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_SPLIT_TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = _SPLIT_HEAD + r"\p{N}{1,3}" + _SPLIT_TAIL
_QWEN2_SPLIT = _SPLIT_HEAD + r"\p{N}" + _SPLIT_TAIL
# tokenizer.ggml.pre values grouped by the splitting rules llama.cpp applies for them.
_GPT2_PRE = {"gpt-2", "gpt2", "mpt", "olmo"}
_DIGITS_THEN_GPT2_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_LLAMA3_PRE = {"llama-bpe", "llama3"}
_QWEN2_PRE = {"qwen2"}

# llama.cpp token types (gguf.TokenType): 3 = control (special), 4 = user-defined (added text).
_CONTROL, _USER_DEFINED = 3, 4


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    if pre in _GPT2_PRE:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGITS_THEN_GPT2_PRE:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in _LLAMA3_PRE | _QWEN2_PRE:
        pattern = _LLAMA3_SPLIT if pre in _LLAMA3_PRE else _QWEN2_SPLIT
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    known = sorted(_GPT2_PRE | _DIGITS_THEN_GPT2_PRE | _LLAMA3_PRE | _QWEN2_PRE)
    raise UnsupportedModelError(f"GGUF pre-tokenizer {pre!r} is not supported (supported: {', '.join(known)})")


def tokenizer_from_gguf(meta: dict[str, Any]) -> Tokenizer:
    """Build the tokenizer from GGUF metadata values (field name -> decoded contents).

    Raises UnsupportedModelError for tokenizer models other than byte-level BPE ("gpt2") or an
    unknown pre-tokenizer, naming the value found.
    """
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedModelError(
            f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2'); "
            "load the model's HF directory instead"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    pre = str(meta.get("tokenizer.ggml.pre", "gpt2"))
    backend = BackendTokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=pre in _LLAMA3_PRE)
    )
    backend.pre_tokenizer = _pre_tokenizer(pre)
    backend.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type") or []
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=False) if k == _CONTROL]
    )
    backend.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, k in zip(tokens, types, strict=False)
            if k == _USER_DEFINED
        ]
    )
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if bos is not None and meta.get("tokenizer.ggml.add_bos_token"):
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B", special_tokens=[(tokens[bos], bos)]
        )
    eos_keys = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
    eos = [int(meta[k]) for k in eos_keys if meta.get(k) is not None]
    return Tokenizer(backend, meta.get("tokenizer.chat_template"), eos, None if bos is None else int(bos))
