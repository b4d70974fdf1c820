"""ONNX models of the embedder on disk: exported (or quantised) once, checked and reused on every later start.

Layout under the cache folder (default ``<data_dir>/cache/embed``)::

    <name>-<weights digest>-opset<N>-<variant>/model.onnx   variant: fp32, int8-static, int8-dynamic
    <name>-<weights digest>-opset<N>-<variant>/meta.json    format version, key, sha256 of model.onnx, how it was built

The folder name is the key: new weights, another opset or another variant is another folder. Both files are
written atomically, model first: a crash between the two leaves a meta.json that does not describe model.onnx,
and an entry whose meta.json is missing, unreadable, of another format or key, or whose model.onnx does not hash
to the recorded sha256 (truncated, edited, half-copied) is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragjet.atomic import atomic_write

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheKey:
    model_id: str  # the embedder's name:weights-digest
    opset: int
    variant: str  # fp32, int8-static or int8-dynamic

    def folder(self, root: Path) -> Path:
        return root / f"{self.model_id.replace(':', '-')}-opset{self.opset}-{self.variant}"


def cached_model(root: Path, key: CacheKey, build: Callable[[Path], dict[str, Any]]) -> Path:
    """The path of `key`'s model.onnx under `root`, built first by `build(path)` when missing, stale or corrupted.

    `build` writes an ONNX model to the path it is given and returns what meta.json should record about it.
    """
    folder = key.folder(root)
    problem = entry_problem(folder, key)
    if problem is None:
        return folder / "model.onnx"
    log.info("building the ONNX embedder %s (%s)", folder.name, problem)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        built = Path(tmp) / "model.onnx"
        details = build(built)
        data = built.read_bytes()
    with atomic_write(folder / "model.onnx") as f:
        f.write(data)
    meta = {"format_version": FORMAT_VERSION, **asdict(key), "sha256": hashlib.sha256(data).hexdigest(), **details}
    with atomic_write(folder / "meta.json") as f:
        f.write(json.dumps(meta, indent=2).encode())
    return folder / "model.onnx"


def entry_problem(folder: Path, key: CacheKey) -> str | None:
    """Why the entry in `folder` cannot be used, or None when it can."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError:
        return "not built yet"
    except (OSError, ValueError) as exc:
        return f"unreadable meta.json: {exc}"
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        return "stale: another cache format"
    if {k: meta.get(k) for k in ("model_id", "opset", "variant")} != asdict(key):
        return "stale: built for another model, opset or variant"
    try:
        digest = _sha256(folder / "model.onnx")
    except OSError as exc:
        return f"unreadable model.onnx: {exc}"
    return None if digest == meta.get("sha256") else "corrupted: model.onnx does not match its recorded sha256"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
