"""Collections and their documents: create, list, upload (ingest), delete.

Every route awaits the pipeline, which does the blocking work (SQLite, file writes, ingest) in threads,
so one collection's long ingest never stalls the event loop that serves everyone else.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, HTTPException, UploadFile

from ragjet.serve.deps import PipelineDep, SettingsDep, TenantDep
from ragjet.serve.schemas import CollectionCreate

router = APIRouter(prefix="/v1/collections", tags=["collections"])

UPLOAD_TYPES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_upload_name(filename: str | None) -> str:
    """Keep only a plain base name, so an upload can never be written outside its collection's folder."""
    name = _UNSAFE.sub("_", Path(filename or "").name).lstrip(".")
    if not name or Path(name).suffix.lower() not in UPLOAD_TYPES:
        raise HTTPException(415, f"file {filename!r}: supported types are {', '.join(sorted(UPLOAD_TYPES))}")
    return name


def _looks_like_its_type(name: str, head: bytes) -> bool:
    if name.lower().endswith(".pdf"):
        return head.startswith(b"%PDF-")
    return b"\x00" not in head


def _save_uploads(folder: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    """Write each upload whole or not at all (a .part file renamed into place)."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for filename, data in files:
        target = folder / filename
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        saved.append(target)
    return saved


@router.get("")
async def list_collections(pipeline: PipelineDep, settings: SettingsDep, tenant: TenantDep) -> dict[str, object]:
    """The caller's collections, and `default`: the one a request that names none is asked of."""
    collections = [asdict(c) for c in await pipeline.list_collections(tenant)]
    return {"collections": collections, "default": settings.serve.default_collection}


@router.post("", status_code=201)
async def create_collection(body: CollectionCreate, pipeline: PipelineDep, tenant: TenantDep) -> dict[str, object]:
    return asdict(await pipeline.create_collection(body.name, tenant))


@router.delete("/{name}", status_code=204)
async def delete_collection(name: str, pipeline: PipelineDep, tenant: TenantDep) -> None:
    await pipeline.delete_collection(name, tenant)


@router.get("/{name}/documents")
async def list_documents(name: str, pipeline: PipelineDep, tenant: TenantDep) -> dict[str, object]:
    return {"documents": [asdict(d) for d in await pipeline.documents(name, tenant)]}


@router.post("/{name}/documents")
async def upload_documents(
    name: str, files: list[UploadFile], pipeline: PipelineDep, settings: SettingsDep, tenant: TenantDep
) -> dict[str, object]:
    """Store uploads under the data dir (stable sources, so a re-upload replaces the old version) and ingest."""
    pipeline.check_writable()  # before the files are stored
    folder = settings.data_dir.expanduser() / "uploads" / tenant / CollectionCreate(name=name).name
    received = []
    for upload in files:
        filename = safe_upload_name(upload.filename)
        data = await upload.read()
        if not _looks_like_its_type(filename, data[:1024]):
            raise HTTPException(
                415, f"file {upload.filename!r}: content does not match its {Path(filename).suffix} type"
            )
        received.append((filename, data))
    saved = await asyncio.to_thread(_save_uploads, folder, received)
    report = await pipeline.ingest(name, saved, tenant=tenant)
    return {"collection": name, "report": asdict(report)}


@router.delete("/{name}/documents", status_code=204)
async def delete_document(name: str, source: str, pipeline: PipelineDep, tenant: TenantDep) -> None:
    if not await pipeline.delete_document(name, source, tenant):
        raise HTTPException(404, f"collection {name!r} has no document {source!r}")
