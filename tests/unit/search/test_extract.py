"""Text extraction on documents built in the test: formats, limits and hostile input."""

from __future__ import annotations

import io
import random
import zipfile

import pytest

from m365lake.search.extract import (
    Extraction,
    extract_message,
    extract_text,
)

_DOCX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def build_docx(paragraphs: list[str], *, title: str = "", creator: str = "") -> bytes:
    """Return a minimal Word document with one run per paragraph."""
    body = "".join(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" for text in paragraphs)
    document = f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'
    core = (
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
        'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:title>{title}</dc:title><dc:creator>{creator}</dc:creator></cp:coreProperties>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _DOCX_CONTENT_TYPES)
        archive.writestr("word/document.xml", document)
        archive.writestr("docProps/core.xml", core)
    return buffer.getvalue()


def build_xlsx(rows: list[list[str | int]]) -> bytes:
    """Return a minimal Excel workbook with one sheet of inline strings and numbers."""
    cells = []
    for row_number, row in enumerate(rows, start=1):
        values = []
        for column, value in enumerate(row):
            reference = f"{chr(ord('A') + column)}{row_number}"
            if isinstance(value, int):
                values.append(f'<c r="{reference}"><v>{value}</v></c>')
            else:
                values.append(f'<c r="{reference}" t="inlineStr"><is><t>{value}</t></is></c>')
        cells.append(f'<row r="{row_number}">{"".join(values)}</row>')
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    relationships = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{relationships}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{main}" xmlns:r="{relationships}"><sheets>'
            '<sheet name="Budget" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{relationships}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{main}"><sheetData>{"".join(cells)}</sheetData></worksheet>'
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_docx_text_and_metadata():
    data = build_docx(
        ["Quarterly pipeline report", "Capacity on Transwestern"],
        title="Q3 report",
        creator="Michelle Lokay",
    )

    result = extract_text(data, filename="report.docx")

    assert result.status == "ok"
    assert result.complete
    assert "Quarterly pipeline report" in result.text
    assert "Capacity on Transwestern" in result.text
    assert result.title == "Q3 report"
    assert result.author == "Michelle Lokay"
    assert result.reason is None


def test_docx_found_by_content_without_name():
    data = build_docx(["Found by its content"])

    result = extract_text(data, filename=None, content_type="application/octet-stream")

    assert result.status == "ok"
    assert "Found by its content" in result.text


def test_xlsx_cells_as_text():
    data = build_xlsx([["Counterparty", "Volume"], ["El Paso", 42000]])

    result = extract_text(data, filename="deals.xlsx")

    assert result.status == "ok"
    assert "Budget" in result.text  # the sheet name
    assert "Counterparty\tVolume" in result.text
    assert "El Paso\t42000" in result.text


def test_blank_docx_is_empty_and_complete():
    result = extract_text(build_docx([]), filename="blank.docx")

    assert result.status == "empty"
    assert result.complete
    assert result.text == ""


def test_plain_text_charsets():
    cases = [
        ("Grüße aus Zürich".encode(), None, "Grüße aus Zürich"),
        ("Grüße aus Zürich".encode("cp1252"), None, "Grüße aus Zürich"),
        ("Привет, мир".encode("koi8-r"), "text/plain; charset=koi8-r", "Привет, мир"),
        ("\ufeffbom text".encode("utf-16-le"), None, "bom text"),
    ]
    for data, content_type, expected in cases:
        result = extract_text(data, filename="note.txt", content_type=content_type)

        assert result.status == "ok", (data, result)
        assert expected in result.text, (data, result.text)


def test_html_file_drops_script_and_style():
    html = (
        b"<html><head><title>Agenda</title><style>p{color:red}</style>"
        b"<script>alert('x')</script></head><body><h1>Gas desk</h1>"
        b"<p>Meet at <b>noon</b></p><table><tr><td>a</td><td>b</td></tr></table>"
        b"<!-- hidden comment --></body></html>"
    )

    result = extract_text(html, filename="agenda.html")

    assert result.status == "ok"
    assert result.title == "Agenda"
    assert "Gas desk" in result.text
    assert "Meet at noon" in result.text
    assert "a\tb" in result.text
    assert "alert" not in result.text
    assert "color" not in result.text
    assert "hidden comment" not in result.text


def test_rtf_text():
    rtf = rb"{\rtf1\ansi\ansicpg1252 {\fonttbl{\f0 Arial;}}\f0 Caf\'e9 meeting \par Second line}"

    result = extract_text(rtf, filename="memo.rtf")

    assert result.status == "ok"
    assert "Café meeting" in result.text
    assert "Second line" in result.text


def test_max_chars_cuts_text_and_reports():
    data = ("word " * 5000).encode()

    result = extract_text(data, filename="long.txt", max_chars=100)

    assert result.status == "too_large"
    assert not result.complete
    assert len(result.text) == 100
    assert result.reason is not None
    assert "100" in result.reason


def test_empty_input():
    result = extract_text(b"", filename="empty.txt")

    assert result.status == "empty"
    assert result.text == ""


def test_zero_bytes_named_docx_is_corrupt():
    result = extract_text(b"", filename="empty.docx")

    assert result.status == "corrupt"
    assert result.reason


def test_garbage_named_as_office_types_is_corrupt():
    garbage = random.Random(7).randbytes(4096)
    for name in ("x.pdf", "x.docx", "x.xlsx", "x.pptx", "x.odt", "x.doc", "x.xls"):
        result = extract_text(garbage, filename=name)

        assert result.status == "corrupt", (name, result)
        assert result.reason, name


def test_garbage_without_name_is_unsupported():
    garbage = random.Random(8).randbytes(4096)

    result = extract_text(garbage)

    assert result.status == "unsupported"
    assert result.reason


def test_truncated_containers_never_raise():
    samples = [
        build_docx(["truncated document body text"]),
        build_xlsx([["truncated", 1]]),
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600,
        b"{\\rtf1 {{{{{{{{",
        b"\x78\x9f\x3e\x22\x01\x00\x01\x06\x90\x08\x00",
        b"\x1f\x8b\x08\x00garbage",
    ]
    for sample in samples:
        for cut in (1, 10, 100, len(sample) // 2, len(sample) - 1):
            result = extract_text(sample[:cut], filename="cut.bin")

            assert isinstance(result, Extraction)
            assert result.status in (
                "ok",
                "empty",
                "unsupported",
                "encrypted",
                "corrupt",
                "too_large",
            )


def test_random_bytes_never_raise():
    generator = random.Random(20261204)
    names = [None, "a.pdf", "a.docx", "a.doc", "a.msg", "a.eml", "a.zip", "a.rtf", "a.html"]
    prefixes = [b"", b"%PDF-1.7\n", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"{\\rtf1"]
    for index in range(200):
        body = generator.randbytes(generator.randint(0, 2048))
        data = prefixes[index % len(prefixes)] + body
        name = names[index % len(names)]

        result = extract_text(data, filename=name)
        message = extract_message(data)

        assert isinstance(result, Extraction)
        assert isinstance(message.body, str)


def test_zip_members_are_extracted_with_names():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/minutes.txt", "Minutes of the rate case meeting")
        archive.writestr("report.docx", build_docx(["Nested report text"]))

    result = extract_text(buffer.getvalue(), filename="bundle.zip")

    assert result.status == "ok"
    assert "notes/minutes.txt" in result.text
    assert "rate case meeting" in result.text
    assert "Nested report text" in result.text


def test_zip_nested_in_itself_stops_at_depth_limit():
    inner = build_docx(["deepest text"])
    for level in range(8):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"level{level}.zip" if level else "doc.docx", inner)
        inner = buffer.getvalue()

    result = extract_text(inner, filename="outer.zip")

    assert result.status == "unsupported"
    assert result.reason is not None
    assert "nested" in result.reason


def test_zip_bomb_member_is_too_large(monkeypatch: pytest.MonkeyPatch):
    from m365lake.search import extract_archive

    monkeypatch.setattr(extract_archive, "MAX_EXPANDED_BYTES", 1024 * 1024)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"0" * (4 * 1024 * 1024))

    result = extract_text(buffer.getvalue(), filename="bomb.zip")

    assert result.status == "too_large"
    assert result.reason is not None
    assert "zeros.txt" in result.reason


def test_input_over_size_limit_is_too_large(monkeypatch: pytest.MonkeyPatch):
    from m365lake.search import extract

    monkeypatch.setattr(extract, "MAX_INPUT_BYTES", 1000)

    result = extract_text(b"x" * 1001, filename="big.txt")

    assert result.status == "too_large"
    assert result.text == ""
    assert result.reason is not None
    assert "1,001" in result.reason


def test_image_is_unsupported_with_reason():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100

    result = extract_text(png, filename="scan.png")

    assert result.status == "unsupported"
    assert result.reason is not None
    assert "OCR" in result.reason


def test_xhtml_with_xml_declaration():
    xhtml = (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>XHTML body text</p></body></html>'
    )

    result = extract_text(xhtml, filename="page.xhtml")

    assert result.status == "ok"
    assert "XHTML body text" in result.text


def test_deeply_nested_html_keeps_all_text():
    markup = "<p>first</p>" + "<div>" * 5000 + "deep text" + "</div>" * 5000 + "<p>last</p>"

    result = extract_text(markup.encode(), filename="deep.html")

    assert result.status == "ok"
    assert "first" in result.text
    assert "deep text" in result.text
    assert "last" in result.text
