"""Small, valid attachment files built from scratch with the standard library.

Every builder returns the same bytes for the same arguments on any machine: zip entries
are stored uncompressed with a fixed timestamp, and the PNG writes its deflate stream as
stored blocks, so no output depends on the zlib build.
"""

from __future__ import annotations

import csv
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from xml.sax.saxutils import escape

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def pdf_document(title: str, lines: Sequence[str]) -> bytes:
    """Build a one-page PDF 1.4 file with Helvetica text and a correct xref table."""

    def pdf_string(text: str) -> str:
        ascii_text = text.encode("latin-1", errors="replace").decode("latin-1")
        return "(" + ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    operations = ["BT", "/F1 16 Tf", "72 720 Td", f"{pdf_string(title)} Tj", "/F1 11 Tf"]
    for line in lines:
        operations += ["0 -18 Td", f"{pdf_string(line)} Tj"]
    operations.append("ET")
    stream = "\n".join(operations).encode("latin-1")

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    output = io.BytesIO()
    output.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(output.tell())
        output.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref_offset = output.tell()
    output.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        output.write(b"%010d 00000 n \n" % offset)
    output.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    output.write(b"startxref\n%d\n%%%%EOF\n" % xref_offset)
    return output.getvalue()


def _zip(entries: Sequence[tuple[str, str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, text in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 0
            info.external_attr = 0
            archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()


_XML_HEADER = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_DOCUMENT_REL = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
)


def _content_types(overrides: Sequence[tuple[str, str]]) -> str:
    parts = "".join(
        f'<Override PartName="{part}" ContentType="{content_type}"/>'
        for part, content_type in overrides
    )
    return (
        _XML_HEADER
        + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        + '<Default Extension="rels" '
        + 'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        + '<Default Extension="xml" ContentType="application/xml"/>'
        + parts
        + "</Types>"
    )


def _relationships(entries: Sequence[tuple[str, str, str]]) -> str:
    body = "".join(
        f'<Relationship Id="{rel_id}" Type="{rel_type}" Target="{target}"/>'
        for rel_id, rel_type, target in entries
    )
    return _XML_HEADER + f'<Relationships xmlns="{_PACKAGE_RELS}">{body}</Relationships>'


def docx_document(paragraphs: Sequence[str]) -> bytes:
    """Build a minimal WordprocessingML (.docx) package with one run per paragraph."""
    word_ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'
        for text in paragraphs
    )
    document = _XML_HEADER + f'<w:document xmlns:w="{word_ns}"><w:body>{body}</w:body></w:document>'
    main_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    return _zip(
        [
            ("[Content_Types].xml", _content_types([("/word/document.xml", main_type)])),
            ("_rels/.rels", _relationships([("rId1", _OFFICE_DOCUMENT_REL, "word/document.xml")])),
            ("word/document.xml", document),
        ]
    )


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def xlsx_workbook(rows: Sequence[Sequence[str | int | float]]) -> bytes:
    """Build a minimal SpreadsheetML (.xlsx) package: one sheet of inline strings and numbers."""
    sheet_ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    row_xml = []
    for row_number, row in enumerate(rows, start=1):
        cells = []
        for column, value in enumerate(row):
            ref = f"{_column_letter(column)}{row_number}"
            if isinstance(value, int | float):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
        row_xml.append(f'<row r="{row_number}">{"".join(cells)}</row>')
    sheet = (
        _XML_HEADER
        + f'<worksheet xmlns="{sheet_ns}"><sheetData>{"".join(row_xml)}</sheetData></worksheet>'
    )
    workbook = (
        _XML_HEADER
        + f'<workbook xmlns="{sheet_ns}" xmlns:r="{rel_ns}"><sheets>'
        + '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    spreadsheet = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    return _zip(
        [
            (
                "[Content_Types].xml",
                _content_types(
                    [
                        ("/xl/workbook.xml", f"{spreadsheet}.sheet.main+xml"),
                        ("/xl/worksheets/sheet1.xml", f"{spreadsheet}.worksheet+xml"),
                    ]
                ),
            ),
            ("_rels/.rels", _relationships([("rId1", _OFFICE_DOCUMENT_REL, "xl/workbook.xml")])),
            ("xl/workbook.xml", workbook),
            (
                "xl/_rels/workbook.xml.rels",
                _relationships([("rId1", f"{rel_ns}/worksheet", "worksheets/sheet1.xml")]),
            ),
            ("xl/worksheets/sheet1.xml", sheet),
        ]
    )


def _stored_zlib(data: bytes) -> bytes:
    """Wrap ``data`` in a zlib stream of stored (uncompressed) deflate blocks."""
    output = bytearray(b"\x78\x01")
    block_size = 65535
    for start in range(0, max(len(data), 1), block_size):
        block = data[start : start + block_size]
        final = 1 if start + block_size >= len(data) else 0
        output += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    output += struct.pack(">I", zlib.adler32(data))
    return bytes(output)


def png_image(width: int, height: int, *, shade: int = 0) -> bytes:
    """Build an RGB PNG with a diagonal gradient. ``shade`` shifts the colours."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type None for every scanline
        for x in range(width):
            rows += bytes(((x * 4 + shade) % 256, (y * 5 + shade) % 256, (x + y + 128) % 256))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", _stored_zlib(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def csv_text(rows: Sequence[Sequence[str | int | float]]) -> bytes:
    """Render rows as RFC 4180 CSV (CRLF line ends, fields quoted when needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")
