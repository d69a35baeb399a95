"""The DAT and CSV writer: delimiters, quotes, line breaks and controls inside values."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from m365lake.discovery.production.loadfile import LoadFileWriter, dat_record, dat_value
from tests.unit.discovery.test_export_fixtures import parse_dat

FIELDS = ("BEGBATES", "SUBJECT", "TO")

# (value written, value a reader following the DAT rules gets back)
CASES = [
    ("plain", "plain"),
    ("", ""),
    ("Zürich café \u2013 naïve 会议", "Zürich café \u2013 naïve 会议"),
    ("line one\r\nline two", "line one\nline two"),
    ("line one\nline two\rline three", "line one\nline two\nline three"),
    ("form\x0cfeed\x0bvertical\x85nel\u2028ls\u2029ps", "form\nfeed\nvertical\nnel\nls\nps"),
    ("field\x14delimiter", "field delimiter"),
    ("þ inside þ", "þ inside þ"),
    ("þ", "þ"),
    ("ends with þ", "ends with þ"),
    ("þþþ", "þþþ"),
    ("þ\x14þ", "þ þ"),
    ('double "quotes" and, commas', 'double "quotes" and, commas'),
    ("tab\tkept", "tab\tkept"),
    ("nul\x00bell\x07escape\x1bdel\x7f", "nul bell escape del "),
    ("lone surrogate \ud800 here", "lone surrogate \ufffd here"),
]


def _write(tmp_path: Path, records: list[dict[str, str]]) -> tuple[Path, Path]:
    dat, csv_path = tmp_path / "load.dat", tmp_path / "load.csv"
    with LoadFileWriter(dat, csv_path, FIELDS) as writer:
        for record in records:
            writer.write(record)
    return dat, csv_path


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_dat_value_reads_back(tmp_path, value, expected):
    dat, _ = _write(tmp_path, [{"BEGBATES": "A1", "SUBJECT": value, "TO": value}])

    rows = parse_dat(dat)

    assert rows == [{"BEGBATES": "A1", "SUBJECT": expected, "TO": expected}]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_csv_holds_what_the_dat_holds(tmp_path, value, expected):
    dat, csv_path = _write(tmp_path, [{"BEGBATES": "A1", "SUBJECT": value}])

    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))

    # The CSV file keeps line breaks as they are; the DAT turns each into one.
    subject = re.sub("\r\n|[\r\n\x85\u2028\u2029]", "\n", rows[0]["SUBJECT"])
    assert subject == expected == parse_dat(dat)[0]["SUBJECT"]


def test_csv_has_no_control_characters(tmp_path):
    _, csv_path = _write(tmp_path, [{"BEGBATES": "A1", "SUBJECT": "nul\x00esc\x1b\x14del\x7f"}])

    text = csv_path.read_text(encoding="utf-8-sig")

    assert "nul esc  del " in text
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)


def test_dat_bytes_follow_the_rules(tmp_path):
    dat, _ = _write(tmp_path, [{"BEGBATES": "A1", "SUBJECT": "a\nb"}])

    data = dat.read_bytes()

    assert data.startswith(b"\xef\xbb\xbf\xc3\xbeBEGBATES\xc3\xbe\x14\xc3\xbeSUBJECT")
    assert data.endswith("þA1þ\x14þa®bþ\x14þþ\r\n".encode())
    assert data.count(b"\r\n") == 2


def test_record_is_one_line_whatever_the_values():
    record = dat_record(["x\r\ny", "\u2028", "\r"])

    assert record.count("\r\n") == 1
    assert record.endswith("\r\n")
    assert "\n" not in record[:-2]
    assert "\r" not in record[:-2]


def test_delimiter_never_inside_value():
    assert "\x14" not in dat_value("a\x14b\x14")


def test_unknown_field_rejected(tmp_path):
    with (
        LoadFileWriter(tmp_path / "l.dat", tmp_path / "l.csv", FIELDS) as writer,
        pytest.raises(ValueError, match="SUBJCT"),
    ):
        writer.write({"SUBJCT": "typo"})


def test_missing_field_written_empty(tmp_path):
    dat, _ = _write(tmp_path, [{"BEGBATES": "A1"}])

    assert parse_dat(dat) == [{"BEGBATES": "A1", "SUBJECT": "", "TO": ""}]
