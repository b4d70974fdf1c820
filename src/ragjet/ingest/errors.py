"""The one error type ingestion raises for input a user got wrong."""

from __future__ import annotations

from pathlib import Path


class IngestError(ValueError):
    """A file (or folder) that cannot be ingested, and why.

    The message always starts with the path so a batch report points at the file at fault.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[IngestError], tuple[str, str]]:
        """Picklable as itself: a Ray Data ingest reports a worker's bad file on the driver (rag/ray_stages.py)."""
        return IngestError, (self.path, self.reason)
