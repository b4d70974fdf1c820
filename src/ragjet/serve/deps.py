"""FastAPI dependencies: the pipeline, the settings, and the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ragjet.config import Settings
from ragjet.rag.pipeline import RagPipeline
from ragjet.serve.auth import AuthError, Gatekeeper, bearer_key


# Async where nothing blocks: FastAPI runs a plain `def` dependency in its thread pool, a hop per request
# that under load queues behind the pool's 40 threads before the pipeline (and its deadline) is reached.
async def _pipeline(request: Request) -> RagPipeline:
    pipeline: RagPipeline = request.app.state.pipeline
    return pipeline


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _tenant(request: Request) -> str:  # key lookup reads SQLite: stays in the thread pool
    """The caller's tenant from its API key (401 without a valid one when auth is on), rate-limited per key."""
    gate: Gatekeeper = request.app.state.gatekeeper
    key = bearer_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    try:
        return gate.tenant_for(key, request.client.host if request.client else "unknown")
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


PipelineDep = Annotated[RagPipeline, Depends(_pipeline)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TenantDep = Annotated[str, Depends(_tenant)]
