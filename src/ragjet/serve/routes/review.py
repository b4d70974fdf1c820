"""The human review queue over HTTP: list flagged answers, inspect one, resolve it with the right answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import Field

from ragjet.rag.review import ReviewItemNotFoundError
from ragjet.serve.deps import PipelineDep, TenantDep
from ragjet.serve.schemas import Strict

router = APIRouter(prefix="/v1/review", tags=["review"])


class ResolveRequest(Strict):
    answer: str = Field("", max_length=20_000, description="the corrected answer; empty approves the original")
    reviewer: str | None = Field(None, max_length=200)


@router.get("")
async def list_items(
    pipeline: PipelineDep, tenant: TenantDep, status: Literal["pending", "resolved"] | None = None, limit: int = 100
) -> dict[str, object]:
    return {"items": [asdict(i) for i in pipeline.review_queue().list(tenant, status, min(max(limit, 1), 1000))]}


@router.get("/{item_id}")
async def get_item(item_id: str, pipeline: PipelineDep, tenant: TenantDep) -> dict[str, object]:
    try:
        return asdict(pipeline.review_queue().get(tenant, item_id))
    except ReviewItemNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/{item_id}/resolve")
async def resolve_item(
    item_id: str, body: ResolveRequest, pipeline: PipelineDep, tenant: TenantDep
) -> dict[str, object]:
    try:
        return asdict(pipeline.review_queue().resolve(tenant, item_id, body.answer, body.reviewer))
    except ReviewItemNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
