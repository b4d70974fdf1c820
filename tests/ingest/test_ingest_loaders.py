"""Loaders on real files of every supported format: titles, sections, sources, hashes, walking."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ragjet.ingest.document import Section
from ragjet.ingest.loaders import load_document, load_documents

PdfFactory = Callable[..., bytes]  # the make_pdf fixture (tests/ingest/conftest.py)

MARKDOWN = """\
# Guide

Intro paragraph one.

Intro paragraph two.

## Install

Run the installer.

### From source

Clone it:

```bash
# not a heading inside a fence
make
```
---

   # indented, not a heading

Setext Two
----------

Last words.
"""


def test_text_file_is_one_untitled_section(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    raw = b"First paragraph.\n\nSecond paragraph.\n"
    path.write_bytes(raw)
    doc = load_document(path)
    assert doc.title == "notes"
    assert doc.sections == (Section("First paragraph.\n\nSecond paragraph."),)
    assert doc.source == str(path.resolve())
    assert doc.content_hash == hashlib.sha256(raw).hexdigest()


def test_markdown_headings_become_heading_paths(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "Guide"
    headings = [s.heading for s in doc.sections]
    assert headings == ["Guide", "Guide > Install", "Guide > Install > From source", "Guide > Setext Two"]
    assert doc.sections[0].text == "Intro paragraph one.\n\nIntro paragraph two."
    from_source = doc.sections[2].text
    assert "# not a heading inside a fence" in from_source
    assert "   # indented, not a heading" in from_source
    assert "```\n---" in from_source  # a rule after a code fence, not a setext heading
    assert doc.sections[3].text == "Last words."


def test_markdown_front_matter_title_and_no_heading_fallback(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: Front Title\nauthor: x\n---\n# Other\n\nBody.\n")
    (tmp_path / "plain-notes.md").write_text("Just text, no heading.\n")
    front = load_document(tmp_path / "a.md")
    assert front.title == "Front Title"
    assert front.sections == (Section("Body.", "Other"),)
    plain = load_document(tmp_path / "plain-notes.md")
    assert plain.title == "plain-notes"
    assert plain.sections == (Section("Just text, no heading."),)


HTML = """<!doctype html>
<html><head><title> Page  Title </title><style>body { color: red }</style>
<script>var hidden = "script text";</script></head>
<body>
<nav><a href="/">Home nav link</a></nav>
<p>Before any heading.</p>
<h1>Main</h1>
<p>First <b>bold</b> paragraph
spread over lines.</p>
<!-- a comment -->
<h2>Details</h2>
<ul><li>item one</li><li>item two</li></ul>
<pre>
code  line 1
    indented line 2
</pre>
<script>alert("also hidden")</script>
</body></html>
"""


def test_html_sections_and_dropped_elements(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML, encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "Page Title"
    assert [s.heading for s in doc.sections] == ["", "Main", "Main > Details"]
    assert doc.sections[0].text == "Before any heading."
    assert doc.sections[1].text == "First bold paragraph spread over lines."
    assert doc.sections[2].text == "item one\n\nitem two\n\ncode  line 1\n    indented line 2"
    for hidden in ("script text", "also hidden", "Home nav link", "color: red", "a comment"):
        assert hidden not in doc.text


def test_html_title_falls_back_to_h1_then_file_name(tmp_path: Path) -> None:
    (tmp_path / "x.htm").write_text("<h1>The H1</h1><p>text</p>")
    (tmp_path / "bare.html").write_text("<p>only a paragraph</p>")
    assert load_document(tmp_path / "x.htm").title == "The H1"
    assert load_document(tmp_path / "bare.html").title == "bare"


def test_html_meta_charset_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "koi.html"
    path.write_bytes('<meta charset="koi8-r"><p>Привет мир</p>'.encode("koi8-r"))
    assert load_document(path).text == "Привет мир"


def test_pdf_one_section_per_page_with_text(tmp_path: Path, make_pdf: PdfFactory) -> None:
    path = tmp_path / "report.pdf"
    raw = make_pdf(["Hello page one.\nSecond line.", "", "Page three text."], title="Quarterly Report")
    path.write_bytes(raw)
    doc = load_document(path)
    assert doc.title == "Quarterly Report"
    assert [(s.page, s.heading) for s in doc.sections] == [(1, ""), (3, "")]
    assert "Hello page one." in doc.sections[0].text and "Second line." in doc.sections[0].text
    assert doc.sections[1].text == "Page three text."
    assert doc.content_hash == hashlib.sha256(raw).hexdigest()


def test_pdf_title_falls_back_to_file_name(tmp_path: Path, make_pdf: PdfFactory) -> None:
    path = tmp_path / "untitled-scan.pdf"
    path.write_bytes(make_pdf(["Some text."]))
    assert load_document(path).title == "untitled-scan"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\ufeffutf-8 with BOM: café".encode(), "utf-8 with BOM: café"),
        ("utf-16 text: naïve — ok".encode("utf-16"), "utf-16 text: naïve — ok"),
        ("cp1252 text: “quoted” café".encode("cp1252"), "cp1252 text: “quoted” café"),
        (b"latin-1 only: \x81 caf\xe9", "latin-1 only: \x81 café"),
        (b"windows\r\nline\rendings", "windows\nline\nendings"),
    ],
)
def test_text_decoding_policy(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "enc.txt"
    path.write_bytes(raw)
    assert load_document(path).text == expected


def _tree(root: Path) -> None:
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b" / "c.md").write_text("# C\n\nc")
    (root / "b" / "d.html").write_text("<p>d</p>")
    (root / "b" / "skip.py").write_text("print('not a document')")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "e.txt").write_text("hidden folder")
    (root / ".f.txt").write_text("hidden file")


def test_load_documents_walks_sorted_and_skips_hidden_and_unknown(tmp_path: Path) -> None:
    _tree(tmp_path)
    docs = list(load_documents([tmp_path]))
    assert [Path(d.source).relative_to(tmp_path.resolve()).as_posix() for d in docs] == [
        "a.txt",
        "b/c.md",
        "b/d.html",
    ]
    assert [d.source for d in load_documents([str(tmp_path)])] == [d.source for d in docs]


def test_load_documents_mixes_files_and_folders_in_given_order(tmp_path: Path) -> None:
    _tree(tmp_path)
    docs = list(load_documents([tmp_path / "b", tmp_path / "a.txt"]))
    assert [Path(d.source).name for d in docs] == ["c.md", "d.html", "a.txt"]
