"""PDF: one section per page with text (``page`` is 1-based), via pypdf's text extraction."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError, PyPdfError

from ragjet.ingest.document import Section
from ragjet.ingest.errors import IngestError

# pypdf logs a warning for every recoverable defect; a corrupt file becomes one IngestError instead.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def parse_pdf(path: Path, raw: bytes) -> tuple[str | None, list[Section]]:
    """Return (metadata title or None, one section per page that has extractable text).

    Raises IngestError for corrupt files, encrypted files that need a password, and files with no
    extractable text at all (scanned images need OCR, which ragjet does not do).
    """
    try:
        reader = PdfReader(io.BytesIO(raw))
        _unlock(path, reader)
        title = reader.metadata.title if reader.metadata else None
        pages = [page.extract_text() or "" for page in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise IngestError(path, f"is not a readable PDF (corrupt or truncated?): {exc}") from None
    sections = [Section(text.strip(), page=number) for number, text in enumerate(pages, 1) if text.strip()]
    if not sections:
        raise IngestError(path, f"PDF has no extractable text on any of its {len(pages)} pages (scanned? OCR it first)")
    return (title.strip() if isinstance(title, str) and title.strip() else None), sections


def _unlock(path: Path, reader: PdfReader) -> None:
    # Many PDFs are encrypted with an owner password only; an empty user password opens them.
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except DependencyError as exc:
        raise IngestError(path, f"PDF is encrypted and cannot be opened here: {exc}") from None
    if not opened:
        raise IngestError(path, "PDF is encrypted with a password; decrypt it first")
