"""The production's load files: a Concordance DAT file and the same rows as CSV.

DAT rules, as review platforms read them:

- UTF-8 with a byte order mark; each record ends with CR LF; the first record names the
  fields.
- Each value is enclosed in the quote character þ (U+00FE), and values are separated by
  the field delimiter U+0014 (DC4).
- A line break inside a value (CR LF, CR, LF, and the other Unicode line separators: VT,
  FF, NEL, U+2028, U+2029) is written as ® (U+00AE), so every record is one line.

The format has no escape character, so a value must not contain the delimiter. Both
files take their values through ``printable_text``, which replaces U+0014 and the other
control characters (U+0000 to U+001F except TAB, LF and CR, and U+007F) with a space, and
VT and FF with LF. So the DAT and the CSV file contain the same values. A þ inside a
value is written unchanged. Because no value contains U+0014, the sequence þ U+0014 þ
occurs only between two values, and splitting a record at each such sequence, then
removing the one þ left at each end, gives the values back. A literal ® in a value is
also written unchanged, so a loader that turns every ® into a line break changes it too.
The CSV file (RFC 4180, every value quoted, UTF-8 with a byte order mark) carries line
breaks as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from m365lake.discovery.production.printable import printable_text

FIELD_DELIMITER = "\x14"
QUOTE = "\u00fe"
NEWLINE_PLACEHOLDER = "\u00ae"
RECORD_END = "\r\n"
ENCODING = "utf-8-sig"
"""UTF-8, with the byte order mark written at the start of the file."""

FIELDS: tuple[str, ...] = (
    "BEGBATES",
    "ENDBATES",
    "BEGATTACH",
    "ENDATTACH",
    "PARENTBATES",
    "ATTACHCOUNT",
    "RECORDTYPE",
    "CUSTODIAN",
    "ALLCUSTODIANS",
    "DUPLICATECOUNT",
    "SOURCEPATH",
    "FILENAME",
    "FILEEXTENSION",
    "SUBJECT",
    "FROM",
    "TO",
    "CC",
    "BCC",
    "DATESENT",
    "DATERECEIVED",
    "DATECREATED",
    "DATEMODIFIED",
    "MESSAGEID",
    "INREPLYTO",
    "CONVERSATIONID",
    "AUTHOR",
    "MIMETYPE",
    "FILESIZE",
    "MD5",
    "SHA256",
    "DEDUPHASH",
    "NATIVELINK",
    "TEXTLINK",
    "TEXTSTATUS",
    "SOURCEID",
    "CAPTUREDAT",
    "DELETEDAT",
    "ISSUES",
)
"""The load file's columns, in order; ``production/__init__`` describes each."""

_LINE_BREAKS = re.compile("\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")


def dat_value(value: str) -> str:
    """Return ``value`` as it is written between the quotes of a DAT record."""
    return _LINE_BREAKS.sub(NEWLINE_PLACEHOLDER, printable_text(value))


def dat_record(values: Sequence[str]) -> str:
    """Return one DAT record: quoted, delimited values and the CR LF record end."""
    separator = QUOTE + FIELD_DELIMITER + QUOTE
    return QUOTE + separator.join(dat_value(value) for value in values) + QUOTE + RECORD_END


class LoadFileWriter:
    """Write the same records to a DAT file and a CSV file, header record first.

    Use it as a context manager. Records are mappings from field name to text. A field
    the mapping lacks is written empty. A name that is not in ``fields`` raises
    ValueError, so a misspelt field is not silently dropped.
    """

    def __init__(self, dat_path: Path, csv_path: Path, fields: Sequence[str] = FIELDS) -> None:
        self.fields = tuple(fields)
        self.records = 0
        self._dat: IO[str] = open(dat_path, "w", encoding=ENCODING, newline="")  # noqa: SIM115
        try:
            self._csv_file: IO[str] = open(  # noqa: SIM115 (closed by close())
                csv_path, "w", encoding=ENCODING, newline=""
            )
        except BaseException:
            self._dat.close()
            raise
        # NOTE: values starting with = + - or @ are written unchanged, so a spreadsheet
        # that opens the CSV file may evaluate them as formulas.
        self._csv = csv.writer(self._csv_file, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        self._dat.write(dat_record(self.fields))
        self._csv.writerow(self.fields)

    def write(self, record: Mapping[str, str]) -> None:
        unknown = record.keys() - set(self.fields)
        if unknown:
            raise ValueError(
                f"load file record has unknown fields {sorted(unknown)}; the fields are: "
                f"{', '.join(self.fields)}"
            )
        values = [record.get(name, "") for name in self.fields]
        self._dat.write(dat_record(values))
        self._csv.writerow([printable_text(value) for value in values])
        self.records += 1

    def close(self) -> None:
        try:
            self._dat.close()
        finally:
            self._csv_file.close()

    def __enter__(self) -> LoadFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
