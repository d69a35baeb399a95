"""Text from spreadsheets (.xlsx, .xlsm, .xlsb, .xls, .ods) through python-calamine."""

from __future__ import annotations

import datetime as dt
import io

import python_calamine

from m365lake.search.extract_office import (
    EmbeddedExtractor,
    ZipDocument,
    core_properties,
    embedded_texts,
    ooxml_properties,
    parse_xml,
    xml_text,
)
from m365lake.search.extract_types import Extraction, ExtractionFailed, finish


def extract_spreadsheet(
    data: bytes,
    *,
    max_chars: int,
    kind: str,
    title: str | None = None,
    author: str | None = None,
    embedded: EmbeddedExtractor | None = None,
) -> Extraction:
    """Extract every sheet's cells as tab-separated rows, one sheet after another.

    ``kind`` is the sniffed format ("xlsx", "xlsb", "xls" or "ods"). Title and author come
    from the caller for OLE files, whose properties calamine does not read.
    """
    try:
        parts = _sheet_texts(data, max_chars=max_chars)
    except python_calamine.PasswordError:
        raise ExtractionFailed("encrypted", "the spreadsheet is password-protected") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        # calamine reports malformed files as CalamineError, ZipError or XmlError, and some
        # records it does not expect as a Rust panic (PanicException).
        parts = _xlsb_shared_strings(data) if kind == "xlsb" else []
        if not parts:
            raise ExtractionFailed(
                "corrupt", f"the spreadsheet cannot be read ({type(error).__name__}: {error})"
            ) from None
    if kind in ("xlsx", "xlsb"):
        parts.append(_xlsx_drawings_and_comments(data, embedded))
        title, author = ooxml_properties(data)
    elif kind == "ods":
        document = ZipDocument(data, "OpenDocument")
        try:
            title, author = core_properties(document, "meta.xml")
        finally:
            document.close()
    text = "\n\n".join(part for part in parts if part.strip())
    return finish(text, max_chars=max_chars, title=title, author=author)


def _sheet_texts(data: bytes, *, max_chars: int) -> list[str]:
    parts: list[str] = []
    budget = max_chars + 1
    workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    for name in workbook.sheet_names:
        rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=True)
        lines = [name]
        for row in rows:
            line = "\t".join(_cell_text(value) for value in row).rstrip("\t")
            if line:
                lines.append(line)
                budget -= len(line) + 1
            if budget <= 0:
                break
        parts.append("\n".join(lines))
        if budget <= 0:
            break
    return parts


def _xlsb_shared_strings(data: bytes) -> list[str]:
    """Return the shared strings of an .xlsb workbook, for when calamine cannot read it.

    Numbers and formulas are lost, but the text a search looks for is nearly always in
    the shared string table ([MS-XLSB] BrtSSTItem).
    """
    try:
        document = ZipDocument(data, "Excel")
    except ExtractionFailed:
        return []
    try:
        if not document.has("xl/sharedStrings.bin"):
            return []
        table = document.read("xl/sharedStrings.bin")
    except ExtractionFailed:
        return []
    finally:
        document.close()
    strings: list[str] = []
    position = 0
    while position < len(table):
        record_type, position = _xlsb_varint(table, position, 2)
        size, position = _xlsb_varint(table, position, 4)
        body = table[position : position + size]
        position += size
        if record_type == _BRT_SST_ITEM and len(body) >= 5:
            count = int.from_bytes(body[1:5], "little")
            strings.append(body[5 : 5 + 2 * count].decode("utf-16-le", errors="replace"))
    return ["\n".join(strings)] if strings else []


_BRT_SST_ITEM = 0x13


def _xlsb_varint(data: bytes, position: int, max_bytes: int) -> tuple[int, int]:
    # [MS-XLSB] record type and size: 7 bits per byte, high bit set when another byte follows.
    value = 0
    for index in range(max_bytes):
        if position >= len(data):
            return value, position
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            break
    return value, position


def _cell_text(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | dt.time | dt.timedelta):
        return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)
    return str(value).replace("\t", " ").replace("\n", " ")


def _xlsx_drawings_and_comments(data: bytes, embedded: EmbeddedExtractor | None) -> str:
    """Return the text of comments, notes, text boxes, charts and embedded files."""
    try:
        document = ZipDocument(data, "Excel")
    except ExtractionFailed:
        return ""
    try:
        names = [
            *document.matching(r"xl/comments\d*\.xml"),
            *document.matching(r"xl/threadedComments/threadedComment\d*\.xml"),
            *document.matching(r"xl/drawings/drawing\d+\.xml"),
        ]
        texts = [xml_text(parse_xml(document.read(name))).strip() for name in names]
        return "\n".join(texts + embedded_texts(document, "xl", embedded))
    except ExtractionFailed:
        return ""
    finally:
        document.close()
