"""Liveness answers while the process runs; readiness only once the models are loaded."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ragjet.serve.deps import PipelineDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(pipeline: PipelineDep) -> JSONResponse:
    if pipeline.is_ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "loading"}, status_code=503)
