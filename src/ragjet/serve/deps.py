"""FastAPI dependencies: the one pipeline and the settings, taken from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragjet.config import Settings
from ragjet.obs.metrics import Metrics
from ragjet.rag.pipeline import RagPipeline


def _pipeline(request: Request) -> RagPipeline:
    pipeline: RagPipeline = request.app.state.pipeline
    return pipeline


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


PipelineDep = Annotated[RagPipeline, Depends(_pipeline)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
