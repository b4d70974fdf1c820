"""Bytes → text, with one decoding policy shared by every text-based format.

Policy, in order:
1. A byte-order mark decides: UTF-8 (BOM stripped), UTF-16 LE/BE.
2. A NUL byte without a BOM means a binary file: refused.
3. A caller-declared charset (HTML ``<meta charset>``) is tried next, if Python knows the codec.
4. Strict UTF-8.
5. cp1252, then latin-1 (which decodes any byte), accepted only if the result looks like text.
Every decoded result must look like text: at most 10% control characters (tab, newlines and form
feed excepted) or U+FFFD replacement characters; otherwise the file is refused as binary.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from ragjet.ingest.document import Section
from ragjet.ingest.errors import IngestError

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_FALLBACK_CODECS = ("utf-8", "cp1252", "latin-1")
# Unicode category Cc (C0 and C1 controls) minus tab, newlines and form feed, plus the replacement character.
_NON_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")
MAX_CONTROL_FRACTION = 0.10


def looks_like_text(text: str) -> bool:
    """True when at most MAX_CONTROL_FRACTION of the characters are control codes or U+FFFD."""
    return len(_NON_TEXT.findall(text)) <= MAX_CONTROL_FRACTION * len(text)


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_text(path: Path, raw: bytes, *, declared: str | None = None) -> str:
    """Decode a text file's bytes under the module's policy; raises IngestError for binary input."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError as exc:
                raise IngestError(path, f"starts with a {codec} byte-order mark but does not decode: {exc}") from None
            return _checked(path, text)
    if b"\x00" in raw:
        raise IngestError(
            path, "looks like a binary file (contains NUL bytes), not text; UTF-16 text needs a byte-order mark"
        )
    candidates = [c for c in (_known_codec(declared), *_FALLBACK_CODECS) if c]
    for codec in dict.fromkeys(candidates):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        return _checked(path, text)
    raise AssertionError("latin-1 decodes any byte sequence")


def _checked(path: Path, text: str) -> str:
    if not looks_like_text(text):
        raise IngestError(path, "looks like a binary file (mostly non-text characters), not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_plain_text(text: str) -> tuple[str | None, list[Section]]:
    """A plain-text file is one untitled section; the chunker finds its paragraphs."""
    return None, [Section(text.strip("\n"))]
