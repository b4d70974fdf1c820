"""FastAPI dependencies: the one pipeline and the settings, taken from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragjet.config import Settings
from ragjet.rag.pipeline import RagPipeline


def _pipeline(request: Request) -> RagPipeline:
    pipeline: RagPipeline = request.app.state.pipeline
    return pipeline


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PipelineDep = Annotated[RagPipeline, Depends(_pipeline)]
SettingsDep = Annotated[Settings, Depends(_settings)]
