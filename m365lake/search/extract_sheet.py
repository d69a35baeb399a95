"""Text from spreadsheets (.xlsx, .xlsm, .xlsb, .xls, .ods) through python-calamine."""

from __future__ import annotations

import datetime as dt
import io

import python_calamine

from m365lake.search.extract_office import ZipDocument, ooxml_properties, parse_xml, xml_text
from m365lake.search.extract_types import Extraction, ExtractionFailed, finish


def extract_spreadsheet(
    data: bytes, *, max_chars: int, kind: str, title: str | None = None, author: str | None = None
) -> Extraction:
    """Extract every sheet's cells as tab-separated rows, one sheet after another.

    ``kind`` is the sniffed format ("xlsx", "xlsb", "xls" or "ods"). Title and author come
    from the caller for OLE files, whose properties calamine does not read.
    """
    parts: list[str] = []
    budget = max_chars + 1
    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        for name in workbook.sheet_names:
            rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=True)
            lines = [name]
            for row in rows:
                cells = [_cell_text(value) for value in row]
                line = "\t".join(cells).rstrip("\t")
                if line:
                    lines.append(line)
                    budget -= len(line) + 1
                if budget <= 0:
                    break
            parts.append("\n".join(lines))
            if budget <= 0:
                break
    except python_calamine.PasswordError:
        raise ExtractionFailed("encrypted", "the spreadsheet is password-protected") from None
    except (
        python_calamine.CalamineError,
        python_calamine.ZipError,
        python_calamine.XmlError,
    ) as error:
        raise ExtractionFailed("corrupt", f"the spreadsheet cannot be read ({error})") from None
    except Exception as error:
        # calamine reports some malformed records as a Rust panic (PanicException derives from
        # BaseException, so the caller's handler catches that) and others as plain errors.
        raise ExtractionFailed("corrupt", f"the spreadsheet cannot be read ({error})") from None
    if kind == "xlsx":
        parts.append(_xlsx_drawings_and_comments(data))
        title, author = ooxml_properties(data)
    elif kind == "ods":
        from m365lake.search.extract_office import core_properties

        document = ZipDocument(data, "OpenDocument")
        try:
            title, author = core_properties(document, "meta.xml")
        finally:
            document.close()
    text = "\n\n".join(part for part in parts if part.strip())
    return finish(text, max_chars=max_chars, title=title, author=author)


def _cell_text(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | dt.time | dt.timedelta):
        return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)
    return str(value).replace("\t", " ").replace("\n", " ")


def _xlsx_drawings_and_comments(data: bytes) -> str:
    """Return the text of comments, notes and text boxes, which are not cells."""
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
        return "\n".join(xml_text(parse_xml(document.read(name))).strip() for name in names)
    except ExtractionFailed:
        return ""
    finally:
        document.close()
