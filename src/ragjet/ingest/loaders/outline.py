"""Turn a stream of headings and body lines into sections with heading paths ("Install > From source")."""

from __future__ import annotations

from ragjet.ingest.document import Section

HEADING_SEPARATOR = " > "


class Outline:
    """Collects body lines under the current heading path; `sections` drops headings without a body."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []  # (level, heading) from outermost to innermost
        self._lines: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, title: str) -> None:
        """Close the current section and open one at `level` (1 = outermost)."""
        self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))

    def line(self, text: str) -> None:
        self._lines.append(text)

    def drop_last_line(self) -> None:
        """Take back the last body line (it turned out to be a setext heading's text)."""
        self._lines.pop()

    def paragraph(self, text: str) -> None:
        """Append a whole paragraph (a block of lines), separated from the previous one by a blank line."""
        if self._lines:
            self._lines.append("")
        self._lines.append(text)

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        body = "\n".join(self._lines).strip("\n")
        self._lines = []
        if body.strip():
            self.sections.append(Section(body, HEADING_SEPARATOR.join(title for _, title in self._path)))
