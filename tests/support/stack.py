"""Skip end-to-end tests while a layer they run on is not built yet, saying which one."""

from __future__ import annotations

import importlib

import pytest

LAYERS = {
    "ragjet.embed.batcher": "DynamicBatcher",
    "ragjet.store": "Collection",
    "ragjet.retrieve": "Retriever",
    "ragjet.llm.engine.llm_engine": "LLMEngine",
}


def require_layers(*modules: str) -> None:
    """Skip the calling test module unless every named layer (default: the whole RAG stack) is importable."""
    missing = []
    for module in modules or tuple(LAYERS):
        try:
            if not hasattr(importlib.import_module(module), LAYERS.get(module, "__name__")):
                missing.append(f"{module}.{LAYERS[module]}")
        except ImportError:
            missing.append(module)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not built yet", allow_module_level=True)
