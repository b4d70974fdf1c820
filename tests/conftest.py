"""Fixtures shared by every test area; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from support.tiny_models import CORPUS, ChatMLTokenizer, train_tokenizer, write_tiny_llama

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors in Triton's interpreter; it is chosen when triton is first imported,
    # which ragjet's attention layer does, so before any test module imports ragjet.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    return list(CORPUS.values())


@pytest.fixture(scope="session")
def chat_tokenizer(corpus_texts: list[str]) -> ChatMLTokenizer:
    return ChatMLTokenizer(train_tokenizer(corpus_texts))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-document corpus as markdown files (lighthouses, volcanoes, bread)."""
    directory = tmp_path_factory.mktemp("corpus")
    for name, text in CORPUS.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, corpus_texts: list[str]) -> Path:
    """A tied-embedding 2-layer chat Llama whose eos is <|im_end|>; tests/llm has its own oracle models."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), train_tokenizer(corpus_texts))
