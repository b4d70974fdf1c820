"""Text generators behind one interface, picked by name from LLMSettings.backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragjet.llm.backends.base import BackendError, Completion, LLMBackend, Messages, TextDelta

if TYPE_CHECKING:
    from ragjet.config import LLMSettings

__all__ = ["BackendError", "Completion", "LLMBackend", "Messages", "TextDelta", "create_backend"]


def create_backend(settings: LLMSettings) -> LLMBackend:
    """Build the backend `settings.backend` names; "native" loads the model (seconds), so call it off the loop.

    The backend modules are imported here, not at the top, because `native` pulls in torch and the model
    code, and the engine itself imports this package's `base`.

    Errors: ModelNotFoundError for an unknown model name or path (native).
    """
    if settings.backend == "native":
        from ragjet.llm.backends.native import NativeBackend

        return NativeBackend.from_settings(settings)
    if settings.backend == "openai":
        from ragjet.llm.backends.openai import OpenAIBackend

        return OpenAIBackend(settings)
    raise ValueError(f"unknown llm.backend {settings.backend!r}; choose native or openai")
