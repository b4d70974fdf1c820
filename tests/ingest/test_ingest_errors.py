"""Every way a user can hand ingestion bad input ends in an IngestError naming the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ragjet.ingest.errors import IngestError
from ragjet.ingest.loaders import load_document, load_documents

PdfFactory = Callable[..., bytes]  # the make_pdf fixture (tests/ingest/conftest.py)


def _expect_error(path: Path, reason_part: str) -> IngestError:
    with pytest.raises(IngestError) as info:
        load_document(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path.endswith(path.name)
    assert str(err).startswith(err.path + ": ")
    assert reason_part in err.reason
    return err


def test_missing_path(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.txt", "no such file")


def test_directory_given_to_load_document(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _expect_error(tmp_path / "sub", "is a directory")


def test_unsupported_extension_named_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "data.docx"
    path.write_bytes(b"PK\x03\x04 zip")
    err = _expect_error(path, "unsupported file type '.docx'")
    assert ".md" in err.reason and ".pdf" in err.reason  # the message lists what is supported


@pytest.mark.parametrize(("raw", "reason"), [(b"", "is empty"), (b" \n\t\r\n  ", "only whitespace")])
def test_empty_and_whitespace_only(tmp_path: Path, raw: bytes, reason: str) -> None:
    path = tmp_path / "blank.md"
    path.write_bytes(raw)
    _expect_error(path, reason)


def test_html_with_only_dropped_content(tmp_path: Path) -> None:
    path = tmp_path / "scripts.html"
    path.write_text("<script>only()</script><nav>menu</nav>")
    _expect_error(path, "contains no text")


def test_binary_with_nul_bytes_disguised_as_text(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    _expect_error(path, "binary file (contains NUL bytes)")


def test_binary_without_nul_bytes_disguised_as_markdown(tmp_path: Path) -> None:
    path = tmp_path / "noise.md"
    path.write_bytes(bytes(b for b in range(1, 256)) * 8)  # decodes only as latin-1: full of controls
    _expect_error(path, "mostly non-text")


def test_bad_utf16_after_bom(tmp_path: Path) -> None:
    path = tmp_path / "broken16.txt"
    path.write_bytes(b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xd8")  # lone surrogate at the end
    _expect_error(path, "byte-order mark but does not decode")


def test_corrupt_pdf_truncated(tmp_path: Path, make_pdf: PdfFactory) -> None:
    raw = make_pdf(["A page of text that will be cut off."])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(raw[: len(raw) // 2])
    _expect_error(path, "not a readable PDF")


def test_garbage_named_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_text("this is not a pdf at all")
    _expect_error(path, "not a readable PDF")


def test_encrypted_pdf(tmp_path: Path, make_pdf: PdfFactory) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(make_pdf(["secret text"], password="hunter2"))
    _expect_error(path, "encrypted with a password")


def test_pdf_without_extractable_text(tmp_path: Path, make_pdf: PdfFactory) -> None:
    path = tmp_path / "scanned.pdf"
    path.write_bytes(make_pdf(["", ""]))
    _expect_error(path, "no extractable text on any of its 2 pages")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_real_permissions(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("private")
    path.chmod(0)
    try:
        _expect_error(path, "cannot be read")
    finally:
        path.chmod(0o600)


def test_unreadable_file_injected_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("private")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # root ignores chmod, so inject the fault
    err = _expect_error(path, "cannot be read: Permission denied")
    assert err.path == str(path.resolve())


def test_folder_without_supported_files(tmp_path: Path) -> None:
    (tmp_path / "code.py").write_text("x = 1")
    with pytest.raises(IngestError, match="folder contains no supported files") as info:
        list(load_documents([tmp_path]))
    assert info.value.path == str(tmp_path)


def _mixed_folder(root: Path, make_pdf: PdfFactory) -> None:
    (root / "1-good.txt").write_text("good one")
    (root / "2-empty.txt").write_text("")
    (root / "3-binary.md").write_bytes(b"\x00\x01\x02")
    (root / "4-corrupt.pdf").write_bytes(make_pdf(["x"])[:100])
    (root / "5-good.md").write_text("# Good\n\ntwo")


def test_load_documents_raise_stops_at_first_bad_file(tmp_path: Path, make_pdf: PdfFactory) -> None:
    _mixed_folder(tmp_path, make_pdf)
    seen = []
    with pytest.raises(IngestError, match="2-empty.txt: is empty"):
        for doc in load_documents([tmp_path], on_error="raise"):
            seen.append(Path(doc.source).name)
    assert seen == ["1-good.txt"]


def test_load_documents_skip_reports_each_bad_input(tmp_path: Path, make_pdf: PdfFactory) -> None:
    _mixed_folder(tmp_path, make_pdf)
    errors: list[IngestError] = []
    paths = [tmp_path, tmp_path / "missing.txt", tmp_path / "x.docx"]
    (tmp_path / "x.docx").write_text("not supported")
    docs = list(load_documents(paths, on_error="skip", on_skip=errors.append))
    assert [Path(d.source).name for d in docs] == ["1-good.txt", "5-good.md"]
    assert [Path(e.path).name for e in errors] == [
        "2-empty.txt",
        "3-binary.md",
        "4-corrupt.pdf",
        "missing.txt",
        "x.docx",
    ]


def test_load_documents_rejects_unknown_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error must be"):
        list(load_documents([tmp_path], on_error="ignore"))  # type: ignore[arg-type]
