"""Retrieval without generation: the two-stage search over one collection."""

from __future__ import annotations

import time

from fastapi import APIRouter

from ragjet.rag.requests import SearchParams
from ragjet.serve.deps import PipelineDep, SettingsDep, TenantDep
from ragjet.serve.schemas import SearchResponse, SearchResultOut

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse)
async def search(req: SearchParams, pipeline: PipelineDep, settings: SettingsDep, tenant: TenantDep) -> SearchResponse:
    collection = req.collection or settings.serve.default_collection
    start = time.perf_counter()
    hits = await pipeline.search(req.query, collection, top_k=req.top_k, filters=req.filters, tenant=tenant)
    results = [
        SearchResultOut(
            rank=h.rank,
            chunk_id=h.chunk_id,
            score=h.score,
            dense_score=h.dense_score,
            bm25_score=h.bm25_score,
            source=h.source,
            title=h.title,
            heading=h.heading,
            page=h.page,
            text=h.text,
        )
        for h in hits
    ]
    return SearchResponse(collection=collection, results=results, took_ms=(time.perf_counter() - start) * 1e3)
