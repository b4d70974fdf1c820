"""The host and the compute paths this server chose (`ragjet doctor`'s report), for bug reports and dashboards."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ragjet.serve.deps import PipelineDep, SettingsDep, TenantDep
from ragjet.system_report import system_report

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/system")
async def system(settings: SettingsDep, pipeline: PipelineDep, _: TenantDep) -> dict[str, object]:
    """Never builds the fused kernels (a request must not compile for 30 s): it reports what the engine's start did,
    and how the running engine split its device's memory. Off the event loop: it reads model files and the disk."""
    report = await asyncio.to_thread(system_report, settings, False)
    try:
        report["engine_memory"] = dict(pipeline.engine_stats().memory) or None
    except RuntimeError:  # not started, or a remote backend
        report["engine_memory"] = None
    return report
