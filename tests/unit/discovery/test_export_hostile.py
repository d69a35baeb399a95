"""Hostile file and attachment names in a production: safe, unique and traceable files."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m365lake.discovery import save_search
from m365lake.discovery.production import ExportOptions, export_production, verify_production
from m365lake.discovery.production.names import MAX_NAME_BYTES, is_device_name
from m365lake.discovery.production.printable import printable_text
from m365lake.lake import Lake
from tests.unit.discovery.test_export_fixtures import (
    ACTOR,
    InlineExtractor,
    SeedLake,
    mime_message,
    open_case,
    parse_dat,
)

OWNER = "mallory@contoso.example"
HOSTILE_NAMES = [
    "../../../../tmp/escaped.txt",
    "..\\..\\Windows\\win.ini",
    "/etc/passwd",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "CON",
    "nul.txt",
    "COM1.log",
    "LPT1",
    "a" * 300 + ".txt",
    "control\x01\x1fchars\x7f.txt",
    "trailing dot.",
    "trailing space ",
    "Report.txt",
    "report.txt",
    "REPORT.TXT",
    'what? a*b: "x" <y> |z|.txt',
    "annexe\u202efdp.exe",
    "line\nbreak.txt",
]


@dataclass
class Hostile:
    lake: Lake
    case_id: str


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    lake = Lake.open(tmp_path_factory.mktemp("hostile") / "lake")
    seed = SeedLake(lake)
    seed.mailbox("mb-mallory", OWNER)
    seed.onedrive("d-mallory", "mb-mallory", OWNER)
    for number, name in enumerate(HOSTILE_NAMES):
        seed.file("d-mallory", f"f{number}", name, f"hostile name {number}\n".encode(), path="Drop")
    attachments = [
        (name, "text/plain", f"hostile attachment {number}\n".encode())
        for number, name in enumerate(HOSTILE_NAMES)
        if "\n" not in name and "\x01" not in name
    ]
    seed.message(
        "mb-mallory",
        "m1",
        mime_message(
            subject="hostile names",
            sender=OWNER,
            to=[OWNER],
            body="hostile attachments\n",
            attachments=attachments,
        ),
    )
    seed.commit()
    seed.index()
    case_id = open_case(lake, "CASE-H", [("mailbox", OWNER), ("onedrive", OWNER)])
    save_search(lake, case_id, "hostile", "hostile", actor=ACTOR)
    yield Hostile(lake, case_id)


def _export(hostile: Hostile, destination: Path, native_names: str) -> list[dict[str, str]]:
    export_production(
        hostile.lake,
        hostile.case_id,
        destination,
        actor=ACTOR,
        options=ExportOptions(native_names=native_names, dedup="none"),  # type: ignore[arg-type]
        extractor=InlineExtractor(),
    )
    with open(destination / "DATA" / "loadfile.csv", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("native_names", ["control", "original"])
def test_every_name_stays_inside(hostile, tmp_path, native_names):
    destination = tmp_path / "prod"
    _export(hostile, destination, native_names)
    root = destination.resolve()

    for path in destination.rglob("*"):
        assert path.resolve().is_relative_to(root), path
        assert not path.is_symlink()
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("native_names", ["control", "original"])
def test_every_name_windows_safe(hostile, tmp_path, native_names):
    rows = _export(hostile, tmp_path / "prod", native_names)

    for row in rows:
        for link in (row["NATIVELINK"], row["TEXTLINK"]):
            components = link.split("\\")
            assert all(component for component in components), link
            for component in components:
                assert not any(character in component for character in '<>:"/|?*'), link
                assert not any(ord(character) < 32 for character in component), link
                assert not component.endswith((".", " ")), link
                assert not is_device_name(component), link
                assert len(component.encode("utf-8")) <= MAX_NAME_BYTES, link
            assert len(link) < 200, link


@pytest.mark.parametrize("native_names", ["control", "original"])
def test_names_unique_ignoring_case(hostile, tmp_path, native_names):
    rows = _export(hostile, tmp_path / "prod", native_names)
    links = [row["NATIVELINK"].casefold() for row in rows]

    assert len(links) == len(set(links)) == len(rows)


@pytest.mark.parametrize("native_names", ["control", "original"])
def test_load_file_maps_original_names(hostile, tmp_path, native_names):
    destination = tmp_path / "prod"
    rows = _export(hostile, destination, native_names)
    files = {row["FILENAME"]: row for row in rows if row["RECORDTYPE"] == "File"}

    # The load file has a space where a name had a control character.
    assert set(files) == {printable_text(name) for name in HOSTILE_NAMES}
    for number, name in enumerate(HOSTILE_NAMES):
        native = destination / files[printable_text(name)]["NATIVELINK"].replace("\\", "/")
        assert native.read_bytes() == f"hostile name {number}\n".encode()


def test_attachment_names_traceable(hostile, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(hostile, destination, "original")
    attachments = [row for row in rows if row["RECORDTYPE"] == "Attachment"]
    expected = [
        (number, name)
        for number, name in enumerate(HOSTILE_NAMES)
        if "\n" not in name and "\x01" not in name
    ]

    assert len(attachments) == len(expected)
    for row, (number, name) in zip(attachments, expected, strict=True):
        # MIME header parsing drops a name's trailing white space before the archive reads it.
        assert row["FILENAME"] == name.rstrip()
        content = (destination / row["NATIVELINK"].replace("\\", "/")).read_text()
        assert content == f"hostile attachment {number}\n"


def test_dat_and_csv_agree_on_names(hostile, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(hostile, destination, "control")
    dat_rows = parse_dat(destination / "DATA" / "loadfile.dat")

    for csv_row, dat_row in zip(rows, dat_rows, strict=True):
        # Neither file carries control characters: both have a space where the name had one.
        assert dat_row["FILENAME"] == csv_row["FILENAME"]
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", csv_row["FILENAME"])
        assert dat_row["NATIVELINK"] == csv_row["NATIVELINK"]


def test_hostile_production_verifies(hostile, tmp_path):
    destination = tmp_path / "prod"
    _export(hostile, destination, "original")

    assert verify_production(destination).ok
