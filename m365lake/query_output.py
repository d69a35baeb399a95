"""Render the rows of a SQL result as a terminal table, JSON or CSV.

The table is for reading: each value is cut at ``TABLE_CELL_WIDTH`` characters, and a
cut value ends in "…" so it is never mistaken for the whole value. A SHA-256 in hex
(64 characters) always fits. JSON and CSV are for scripts and carry whole values: binary
as base64 text, lists and structs as JSON arrays and objects, timestamps in ISO 8601.
"""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import IO, Any

TABLE_CELL_WIDTH = 100
CUT_MARK = "…"
NEWLINE_MARK = "⏎"

# Archived mail is written by outsiders. Control characters (C0, DEL, C1: ESC starts the
# sequences that rewrite the clipboard, set the window title or hide links) and the
# Unicode bidirectional overrides (which reorder how text appears) would act on the
# reader's terminal, so the table shows them as escapes such as \x1b or \u202e.
_UNSAFE_FOR_TERMINAL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def terminal_safe(text: str) -> str:
    """Return ``text`` with control characters and bidi overrides written as escapes."""
    return _UNSAFE_FOR_TERMINAL.sub(_escape_character, text)


def _escape_character(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def json_value(value: Any) -> Any:
    """Convert one DuckDB result value into a value that ``json.dumps`` writes as is."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # NOTE: a DECIMAL with more than about 15 significant digits loses precision
        # as a JSON number, because JSON readers parse numbers as doubles.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def to_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return the rows as a JSON array of objects keyed by column name."""
    records = [
        {column: json_value(value) for column, value in zip(columns, row, strict=True)}
        for row in rows
    ]
    return json.dumps(records, indent=2, ensure_ascii=False)


def csv_value(value: Any) -> Any:
    """Convert one result value for a CSV cell: binary as base64, lists and structs as JSON."""
    if isinstance(value, bytes | bytearray | memoryview | datetime.date | datetime.time):
        return json_value(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(json_value(value), ensure_ascii=False)
    return value


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: IO[str]) -> None:
    """Write a header line and the rows to ``stream`` as CSV."""
    writer = csv.writer(stream)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_value(value) for value in row])


def table_cell(value: Any) -> str:
    """Return a value as one line of at most ``TABLE_CELL_WIDTH`` characters."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(json_value(value), ensure_ascii=False)
    else:
        converted = json_value(value)
        text = converted if isinstance(converted, str) else str(value)
    text = text.replace("\r\n", NEWLINE_MARK).replace("\n", NEWLINE_MARK).replace("\r", " ")
    text = terminal_safe(text.replace("\t", " "))
    if len(text) > TABLE_CELL_WIDTH:
        text = text[: TABLE_CELL_WIDTH - len(CUT_MARK)] + CUT_MARK
    return text


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Return the lines of a text table: header, rule, one line per row, row count."""
    cells = [[table_cell(value) for value in row] for row in rows]
    widths = [len(name) for name in columns]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    for row in cells:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    lines.append(f"({len(rows)} rows)")
    return lines
