"""Load files into Documents: one loader per format, chosen by file extension.

`load_document` reads one file; `load_documents` walks files and folders (recursively, sorted, hidden
entries skipped) and either stops at the first bad file or skips it and reports it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from ragjet.ingest.document import Document, Section
from ragjet.ingest.errors import IngestError
from ragjet.ingest.loaders.html import declared_charset, parse_html
from ragjet.ingest.loaders.markdown import parse_markdown
from ragjet.ingest.loaders.pdf import parse_pdf
from ragjet.ingest.loaders.text import decode_text, parse_plain_text

__all__ = ["SUPPORTED_EXTENSIONS", "IngestError", "iter_files", "load_document", "load_documents"]

Parsed = tuple[str | None, list[Section]]  # (title if the file names one, sections)


def _load_text(path: Path, raw: bytes) -> Parsed:
    return parse_plain_text(decode_text(path, raw))


def _load_markdown(path: Path, raw: bytes) -> Parsed:
    return parse_markdown(decode_text(path, raw))


def _load_html(path: Path, raw: bytes) -> Parsed:
    return parse_html(decode_text(path, raw, declared=declared_charset(raw)))


LOADERS: dict[str, Callable[[Path, bytes], Parsed]] = {
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": parse_pdf,
}
SUPPORTED_EXTENSIONS = frozenset(LOADERS)


def load_document(path: Path | str) -> Document:
    """Read one file into a Document.

    `source` is the absolute resolved path, `content_hash` the sha256 of the raw bytes, `title` the
    file's own title (markdown front matter or first ``#``, HTML ``<title>``/``<h1>``, PDF metadata)
    or else the file name without extension.

    Raises:
        IngestError: the path is missing, a directory, unreadable, of an unsupported type, empty or
            whitespace only, binary, undecodable, or (PDF) corrupt, encrypted or without text.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise IngestError(path, "no such file or directory")
    path = path.resolve()
    if path.is_dir():
        raise IngestError(path, "is a directory; use load_documents to walk folders")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise IngestError(path, f"unsupported file type {path.suffix or '(no extension)'!r}; supported: {supported}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise IngestError(path, "is empty" if not raw else "contains only whitespace")
    title, sections = loader(path, raw)
    if not sections:
        raise IngestError(path, "contains no text")
    return Document(
        source=str(path),
        title=title or path.stem,
        sections=tuple(sections),
        content_hash=hashlib.sha256(raw).hexdigest(),
    )


def iter_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Expand folders into their supported files (recursive, sorted, hidden entries skipped).

    Files named explicitly are yielded whatever their extension, so `load_document` reports an
    unsupported one. Raises IngestError for a missing path or a folder with no supported files.
    """
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise IngestError(path, "no such file or directory")
        if not path.is_dir():
            yield path
            continue
        found = sorted(_supported_files(path))
        if not found:
            supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
            raise IngestError(path, f"folder contains no supported files ({supported})")
        yield from found


def _supported_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders from the walk
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_EXTENSIONS:
                yield Path(root, name)


def load_documents(
    paths: Iterable[Path | str],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    on_skip: Callable[[IngestError], None] | None = None,
) -> Iterator[Document]:
    """Load every file under `paths`, lazily, in a deterministic order.

    Args:
        paths: files and/or folders; folders are walked recursively for supported extensions.
        on_error: "raise" stops at the first bad file or folder; "skip" moves on.
        on_skip: with on_error="skip", called once per skipped file or folder with its IngestError
            (for example ``errors.append``).

    Raises:
        IngestError: with on_error="raise", the first problem met.
        ValueError: an unknown `on_error`.
    """
    for path in files_to_load(paths, on_error=on_error, on_skip=on_skip):
        try:
            document = load_document(path)
        except IngestError as exc:
            _handle(exc, on_error, on_skip)
            continue
        yield document


def files_to_load(
    paths: Iterable[Path | str],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    on_skip: Callable[[IngestError], None] | None = None,
) -> Iterator[Path]:
    """The files `load_documents` loads, in its order, without reading them: a distributed ingest lists them on
    its driver and loads them in workers. A missing path or an empty folder is handled as `on_error` says."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    for given in paths:
        try:
            files = list(iter_files([given]))
        except IngestError as exc:
            _handle(exc, on_error, on_skip)
            continue
        yield from files


def _handle(exc: IngestError, on_error: str, on_skip: Callable[[IngestError], None] | None) -> None:
    if on_error == "raise":
        raise exc
    if on_skip is not None:
        on_skip(exc)
