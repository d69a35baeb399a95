"""Table, JSON and CSV rendering of SQL results for the m365lake sql command."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest

from m365lake.query_output import (
    TABLE_CELL_WIDTH,
    format_table,
    table_cell,
    to_json,
    write_csv,
)

HASH = "ab" * 32


def duckdb_result(sql: str) -> tuple[list[str], list[tuple]]:
    with duckdb.connect() as connection:
        result = connection.execute(sql)
        return [column[0] for column in result.description], result.fetchall()


def test_table_keeps_hash_whole() -> None:
    lines = format_table(["sha256"], [(HASH,)])

    assert lines[2] == HASH


def test_table_marks_cut_values() -> None:
    long_value = "x" * 500

    lines = format_table(["subject", "n"], [(long_value, 1)])

    cell = lines[2].split("  ")[0]
    assert len(cell) == TABLE_CELL_WIDTH
    assert cell.endswith("…")
    assert cell[:-1] == long_value[: TABLE_CELL_WIDTH - 1]


def test_table_short_values_unmarked() -> None:
    lines = format_table(["subject"], [("x" * TABLE_CELL_WIDTH,)])

    assert lines[2] == "x" * TABLE_CELL_WIDTH


def test_table_newlines_stay_on_one_line() -> None:
    lines = format_table(["body"], [("first\r\nsecond\nthird",)])

    assert lines[2] == "first⏎second⏎third"
    assert len(lines) == 4
    assert lines[3] == "(1 rows)"


def test_table_null_and_list() -> None:
    lines = format_table(["a", "b"], [(None, ["x", "y"])])

    assert lines[2].split() == ['["x",', '"y"]']


def test_json_types() -> None:
    columns, rows = duckdb_result(
        "SELECT '\\x00\\xff'::BLOB AS data, ['a', 'b'] AS names, "
        "TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at, 1.25::DECIMAL(5, 2) AS price, "
        "10::DECIMAL(5, 2) AS whole, {'k': 'v'} AS struct, NULL AS nothing"
    )

    records = json.loads(to_json(columns, rows))

    assert len(records) == 1
    record = records[0]
    assert base64.b64decode(record["data"]) == bytes(rows[0][0])
    assert record["names"] == ["a", "b"]
    assert datetime.fromisoformat(record["at"]) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert record["price"] == 1.25
    assert record["whole"] == 10
    assert isinstance(record["whole"], int)
    assert record["struct"] == {"k": "v"}
    assert record["nothing"] is None


def test_json_binary_inside_list() -> None:
    records = json.loads(to_json(["parts"], [([b"\x01", b"\x02"],)]))

    assert records == [{"parts": ["AQ==", "Ag=="]}]


def test_csv_lists_and_binary() -> None:
    stream = io.StringIO()

    write_csv(
        ["names", "data", "n", "price"],
        [(["a", "b,c"], b"\x00\x01", 3, Decimal("1.50")), (None, None, None, None)],
        stream,
    )

    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows[0] == ["names", "data", "n", "price"]
    assert json.loads(rows[1][0]) == ["a", "b,c"]
    assert base64.b64decode(rows[1][1]) == b"\x00\x01"
    assert rows[1][2] == "3"
    assert rows[1][3] == "1.50"
    assert rows[2] == ["", "", "", ""]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\x1b]52;c;aGk=\x07b", "a\\x1b]52;c;aGk=\\x07b"),  # OSC 52 writes the clipboard
        ("\x1b]8;;https://evil.example\x07link", "\\x1b]8;;https://evil.example\\x07link"),
        ("x\x9b31mred", "x\\x9b31mred"),  # 8-bit CSI
        ("abc\u202efdp.exe", "abc\\u202efdp.exe"),  # right-to-left override
        ("plain café ✓", "plain café ✓"),
    ],
)
def test_table_cell_escapes_terminal_controls(value: str, shown: str) -> None:
    assert table_cell(value) == shown
