"""Ingest fixtures: the real embedder tokenizer, loaded once, and a builder of real PDF files."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject
from tokenizers import Tokenizer

from ragjet.models import resolve_model

PdfFactory = Callable[..., bytes]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(resolve_model("all-MiniLM-L6-v2") / "tokenizer.json"))


def _font() -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )


def build_pdf(pages: list[str], *, title: str | None = None, password: str | None = None) -> bytes:
    """A real PDF: one page per string, each line drawn with Helvetica; "" gives a page without text."""
    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        fonts = DictionaryObject({NameObject("/F1"): _font()})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        shown = " ".join(f"({line}) Tj T*" for line in text.split("\n")) if text else ""
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td 14 TL {shown} ET".encode())
        page.replace_contents(stream)
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(password, algorithm="RC4-128")  # RC4 needs no `cryptography` package
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def make_pdf() -> PdfFactory:
    return build_pdf
