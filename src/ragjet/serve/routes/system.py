"""The host and the compute paths this server chose (`ragjet doctor`'s report), for bug reports and dashboards."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ragjet.serve.deps import SettingsDep, TenantDep
from ragjet.system_report import system_report

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/system")
async def system(settings: SettingsDep, _: TenantDep) -> dict[str, object]:
    """Never builds the fused kernels (a request must not compile for 30 s): it reports what the engine's start did.
    Off the event loop, since it reads model files and the disk."""
    return await asyncio.to_thread(system_report, settings, False)
