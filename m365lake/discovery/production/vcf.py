"""Render an archived Outlook contact (Graph contact JSON) as a vCard 4.0 (RFC 6350) file.

Text values escape backslash, comma, semicolon and line breaks (RFC 6350 section 3.4);
the control characters the RFC forbids are replaced first, as ``printable`` describes.
Lines longer than 75 octets are folded with CRLF and one space, never inside a UTF-8
sequence (section 3.2). Graph properties without a vCard counterpart (yomi names,
assistant, manager, office location) go into ``X-MS-`` extension properties, so nothing
the archive holds is dropped from the card.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from m365lake.discovery.production.printable import printable_text

MAX_LINE_OCTETS = 75
CRLF = "\r\n"

# (Graph property, vCard property) of single text values.
_TEXT_PROPERTIES = (
    ("nickName", "NICKNAME"),
    ("jobTitle", "TITLE"),
    ("profession", "ROLE"),
    ("businessHomePage", "URL"),
    ("personalNotes", "NOTE"),
)
# Graph properties without a standard vCard property, kept as extensions.
_EXTENSIONS = (
    ("assistantName", "X-MS-ASSISTANT"),
    ("manager", "X-MS-MANAGER"),
    ("officeLocation", "X-MS-OFFICE-LOCATION"),
    ("fileAs", "X-MS-FILE-AS"),
    ("initials", "X-MS-INITIALS"),
    ("yomiGivenName", "X-MS-YOMI-GIVEN-NAME"),
    ("yomiSurname", "X-MS-YOMI-SURNAME"),
    ("yomiCompanyName", "X-MS-YOMI-COMPANY-NAME"),
)
_ADDRESSES = (("businessAddress", "work"), ("homeAddress", "home"), ("otherAddress", None))


def escape_text(value: str) -> str:
    """Escape one text value or component: backslash, comma, semicolon and line breaks."""
    escaped = printable_text(value).replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return escaped.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def _compound(components: Sequence[Any]) -> str:
    return ";".join(escape_text(str(part or "")) for part in components)


def fold_line(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets, splitting between characters."""
    encoded = line.encode("utf-8")
    if len(encoded) <= MAX_LINE_OCTETS:
        return line
    chunks: list[str] = []
    current = ""
    size = 0
    limit = MAX_LINE_OCTETS
    for character in line:
        width = len(character.encode("utf-8"))
        if size + width > limit:
            chunks.append(current)
            # A continuation line starts with one space, which counts towards its 75.
            current, size, limit = "", 0, MAX_LINE_OCTETS - 1
        current += character
        size += width
    chunks.append(current)
    return (CRLF + " ").join(chunks)


def _date(value: str) -> str | None:
    """Return Graph's DateTimeOffset birthday as a vCard date (``19800402``)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.strftime("%Y%m%d")


def _timestamp(value: str) -> str | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _strings(values: Iterable[Any] | None) -> list[str]:
    return [str(value) for value in values or [] if value]


def _formatted_name(contact: Mapping[str, Any]) -> str:
    name = contact.get("displayName")
    if name:
        return str(name)
    parts = (contact.get("givenName"), contact.get("middleName"), contact.get("surname"))
    joined = " ".join(str(part) for part in parts if part)
    if joined:
        return joined
    emails = _strings(entry.get("address") for entry in contact.get("emailAddresses") or [])
    return emails[0] if emails else str(contact.get("companyName") or "")


def _lines(contact: Mapping[str, Any]) -> list[str]:
    lines = ["BEGIN:VCARD", "VERSION:4.0"]
    if contact.get("id"):
        lines.append(f"UID;VALUE=text:{escape_text(str(contact['id']))}")
    lines.append(f"FN:{escape_text(_formatted_name(contact))}")
    name = (
        contact.get("surname"),
        contact.get("givenName"),
        contact.get("middleName"),
        contact.get("title"),
        contact.get("generation"),
    )
    if any(name):
        lines.append(f"N:{_compound(name)}")
    for graph_name, card_name in _TEXT_PROPERTIES:
        if contact.get(graph_name):
            lines.append(f"{card_name}:{escape_text(str(contact[graph_name]))}")
    if contact.get("companyName") or contact.get("department"):
        lines.append(f"ORG:{_compound((contact.get('companyName'), contact.get('department')))}")
    for entry in contact.get("emailAddresses") or []:
        if entry.get("address"):
            lines.append(f"EMAIL:{escape_text(str(entry['address']))}")
    for number in _strings(contact.get("businessPhones")):
        lines.append(f"TEL;TYPE=work,voice:{escape_text(number)}")
    for number in _strings(contact.get("homePhones")):
        lines.append(f"TEL;TYPE=home,voice:{escape_text(number)}")
    if contact.get("mobilePhone"):
        lines.append(f"TEL;TYPE=cell:{escape_text(str(contact['mobilePhone']))}")
    for graph_name, kind in _ADDRESSES:
        address = contact.get(graph_name) or {}
        fields = ("street", "city", "state", "postalCode", "countryOrRegion")
        if not any(address.get(field) for field in fields):
            continue
        parameters = f";TYPE={kind}" if kind else ""
        # ADR: post office box; extended address; street; locality; region; code; country.
        components = ("", "", *(address.get(field) for field in fields))
        lines.append(f"ADR{parameters}:{_compound(components)}")
    for address in _strings(contact.get("imAddresses")):
        lines.append(f"IMPP:{escape_text(address)}")
    if contact.get("birthday"):
        birthday = _date(str(contact["birthday"]))
        if birthday:
            lines.append(f"BDAY:{birthday}")
    if contact.get("spouseName"):
        lines.append(f"RELATED;TYPE=spouse;VALUE=text:{escape_text(str(contact['spouseName']))}")
    for child in _strings(contact.get("children")):
        lines.append(f"RELATED;TYPE=child;VALUE=text:{escape_text(child)}")
    categories = _strings(contact.get("categories"))
    if categories:
        lines.append("CATEGORIES:" + ",".join(escape_text(name) for name in categories))
    for graph_name, card_name in _EXTENSIONS:
        if contact.get(graph_name):
            lines.append(f"{card_name}:{escape_text(str(contact[graph_name]))}")
    if contact.get("lastModifiedDateTime"):
        revision = _timestamp(str(contact["lastModifiedDateTime"]))
        if revision:
            lines.append(f"REV:{revision}")
    lines.append("END:VCARD")
    return lines


def render_vcard(contact: Mapping[str, Any]) -> bytes:
    """Return ``contact`` (Graph contact JSON) as one vCard 4.0, UTF-8 with CRLF line ends."""
    return "".join(fold_line(line) + CRLF for line in _lines(contact)).encode("utf-8")
