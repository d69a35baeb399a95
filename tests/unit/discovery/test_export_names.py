"""Windows-safe, contained file names and control numbers for productions."""

from __future__ import annotations

import pytest

from m365lake.discovery.errors import InvalidRequestError
from m365lake.discovery.production.names import (
    MAX_NAME_BYTES,
    check_prefix,
    check_relative_path,
    control_number,
    is_device_name,
    is_safe_component,
    native_file_name,
    safe_extension,
    safe_file_name,
)

HOSTILE = [
    "../../etc/passwd",
    "..\\..\\Windows\\win.ini",
    "/etc/shadow",
    "C:\\Windows\\System32\\cmd.exe",
    "\\\\server\\share\\x.doc",
    "CON",
    "con.txt",
    "NUL",
    "nul.tar.gz",
    "COM1",
    "com1.log",
    "LPT9.txt",
    "COM\u00b9.txt",
    "AUX .doc",
    "x" * 300,
    "y" * 290 + ".pdf",
    "\u00e9" * 200 + ".docx",
    "bell\x07and\x00nul\x1f.txt",
    "trailing dots...",
    "trailing spaces   ",
    "trailing. . .",
    "   leading spaces.txt",
    'what? a*b: "x" <y> |z|.txt',
    "annexe\u202efdp.exe",
    ".",
    "..",
    "",
    "   ",
    "....",
    "report.PDF",
    "Report.pdf",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_safe(name):
    safe = safe_file_name(name)

    assert is_safe_component(safe)
    assert "/" not in safe
    assert "\\" not in safe
    assert not is_device_name(safe)
    assert not safe.endswith((".", " "))
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe not in ("", ".", "..")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("budget.xlsx", "budget.xlsx"),
        ("Zürich Café résumé \u2013 naïve.docx", "Zürich Café résumé \u2013 naïve.docx"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("trailing dots...", "trailing dots"),
        ("what? a*b.txt", "what_ a_b.txt"),
        ("", "file"),
        ("..", "file"),
    ],
)
def test_safe_name_changes_little(name, expected):
    assert safe_file_name(name) == expected


def test_long_name_keeps_extension():
    safe = safe_file_name("z" * 300 + ".pdf")

    assert safe.endswith(".pdf")
    assert len(safe) == 100


def test_nfd_accents_become_nfc():
    assert safe_file_name("Cafe\u0301.txt") == "Caf\u00e9.txt"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.pdf", ".pdf"),
        ("archive.tar.gz", ".gz"),
        ("no extension", ""),
        ("x.<>", ""),
        ("x.this is not one", ""),
        (".bashrc", ""),
        ("dir.d/file", ""),
        ("C:\\dir.d\\file.DOC", ".DOC"),
        (None, ""),
    ],
)
def test_safe_extension(name, expected):
    assert safe_extension(name) == expected


def test_native_names_unique_for_case_only_duplicates():
    names = {
        native_file_name(f"ABC{number:07d}", original, extension="", mode=mode).casefold()
        for number, original in enumerate(["Report.pdf", "report.pdf", "REPORT.PDF"])
        for mode in ("control",)
    }

    assert len(names) == 3


@pytest.mark.parametrize("mode", ["control", "original"])
@pytest.mark.parametrize("name", HOSTILE)
def test_native_name_safe_and_traceable(mode, name):
    native = native_file_name("ABC0000001", name, extension=".bin", mode=mode)

    assert is_safe_component(native)
    assert native.startswith("ABC0000001")
    assert check_relative_path(f"NATIVES/0001/{native}")


def test_original_mode_keeps_readable_name():
    assert (
        native_file_name("ABC0000007", "Q3 report.xlsx", extension="", mode="original")
        == "ABC0000007_Q3 report.xlsx"
    )


def test_control_mode_uses_guessed_extension():
    assert native_file_name("ABC1", "README", extension=".txt", mode="control") == "ABC1.txt"


@pytest.mark.parametrize(
    "relative",
    ["../x", "NATIVES/../../x", "/abs/x", "NATIVES//x", "C:/x", "NATIVES/CON", "a/b.", ""],
)
def test_relative_path_rejected(relative):
    with pytest.raises(ValueError, match="refusing to write"):
        check_relative_path(relative)


def test_control_number_padding():
    assert control_number("ABC", 42, 7) == "ABC0000042"


def test_control_number_overflow_rejected():
    with pytest.raises(InvalidRequestError, match="does not fit in 3 digits"):
        control_number("ABC", 1000, 3)


@pytest.mark.parametrize("prefix", ["", "../", "A B", "1ABC", "A" * 21, "CON:"])
def test_bad_prefix_rejected(prefix):
    with pytest.raises(InvalidRequestError, match="invalid control number prefix"):
        check_prefix(prefix)
