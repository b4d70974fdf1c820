"""The human review queue over HTTP: list flagged answers, inspect one, resolve it with the right answer.

The queue is a SQLite file: every call runs in a worker thread, off the event loop. An unknown item is
the contract's review_item_not_found (404).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter
from pydantic import Field

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
    items = await asyncio.to_thread(pipeline.review_queue().list, tenant, status, min(max(limit, 1), 1000))
    return {"items": [asdict(i) for i in items]}


@router.get("/{item_id}")
async def get_item(item_id: str, pipeline: PipelineDep, tenant: TenantDep) -> dict[str, object]:
    return asdict(await asyncio.to_thread(pipeline.review_queue().get, tenant, item_id))


@router.post("/{item_id}/resolve")
async def resolve_item(
    item_id: str, body: ResolveRequest, pipeline: PipelineDep, tenant: TenantDep
) -> dict[str, object]:
    queue = pipeline.review_queue()
    return asdict(await asyncio.to_thread(queue.resolve, tenant, item_id, body.answer, body.reviewer))
