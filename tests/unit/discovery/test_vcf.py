"""vCard 4.0 rendering of Graph contacts, read back with a strict RFC 6350 parser."""

from __future__ import annotations

import re
from typing import Any

import pytest

from m365lake.discovery.production.vcf import fold_line, render_vcard

CONTACT: dict[str, Any] = {
    "id": "AAMkAGcontact1",
    "displayName": 'Dubois, Émile; "Mil"',
    "givenName": "Émile",
    "surname": "Dubois",
    "middleName": "Jean",
    "title": "Dr.",
    "generation": "Jr.",
    "nickName": "Mil",
    "jobTitle": "Head of Finance",
    "companyName": "Fabrikam; Europe",
    "department": "Finance, Treasury",
    "emailAddresses": [
        {"name": "Émile Dubois", "address": "emile@fabrikam.example"},
        {"name": "Home", "address": "emile@home.example"},
    ],
    "businessPhones": ["+33 4 72 00 00 01"],
    "homePhones": ["+33 4 72 00 00 02"],
    "mobilePhone": "+33 6 00 00 00 03",
    "businessAddress": {
        "street": "1 Rue de la République\nBâtiment B",
        "city": "Lyon",
        "state": "Auvergne-Rhône-Alpes",
        "postalCode": "69002",
        "countryOrRegion": "France",
    },
    "homeAddress": {},
    "categories": ["Red category", "Clients, key"],
    "personalNotes": "Line one; with semicolon\\backslash\r\nLine two, with comma\n"
    + "Long note ü " * 20,
    "birthday": "1974-05-17T11:59:00Z",
    "spouseName": "Camille",
    "children": ["Léa", "Hugo"],
    "lastModifiedDateTime": "2024-03-04T08:30:00Z",
    "yomiSurname": "デュボワ",
}


def unfold(data: bytes) -> list[str]:
    """Split a vCard stream into logical lines, checking the RFC 6350 wire rules."""
    assert data.endswith(b"\r\n")
    physical = data[:-2].split(b"\r\n")
    for line in physical:
        assert b"\n" not in line, line
        assert b"\r" not in line, line
        assert len(line) <= 75, (len(line), line)
        line.decode("utf-8")  # each physical line is whole UTF-8 on its own
    logical: list[str] = []
    for line in physical:
        text = line.decode("utf-8")
        if text.startswith(" "):
            logical[-1] += text[1:]
        else:
            logical.append(text)
    return logical


_LINE = re.compile(r"^(?P<name>[A-Za-z0-9-]+)(?P<params>(;[A-Za-z0-9-]+=[^;:]*)*):(?P<value>.*)$")


def split_unescaped(value: str, separator: str) -> list[str]:
    """Split on unescaped ``separator`` and unescape each part (RFC 6350 section 3.4)."""
    parts: list[str] = []
    current = ""
    index = 0
    while index < len(value):
        character = value[index]
        if character == "\\":
            following = value[index + 1]
            assert following in "\\,;nN", f"invalid escape \\{following} in {value!r}"
            current += "\n" if following in "nN" else following
            index += 2
            continue
        assert character not in ",;" or character == separator, (
            f"unescaped {character!r} in {value!r}"
        )
        if character == separator:
            parts.append(current)
            current = ""
        else:
            current += character
        index += 1
    parts.append(current)
    return parts


def parse(data: bytes) -> list[tuple[str, dict[str, str], str]]:
    """Return (name, parameters, raw value) of each property of exactly one vCard."""
    properties = []
    for line in unfold(data):
        match = _LINE.match(line)
        assert match, line
        params = dict(part.split("=", 1) for part in match.group("params").split(";") if part)
        properties.append((match.group("name").upper(), params, match.group("value")))
    assert properties[0] == ("BEGIN", {}, "VCARD")
    assert properties[1] == ("VERSION", {}, "4.0")
    assert properties[-1] == ("END", {}, "VCARD")
    return properties


def values(properties: list[tuple[str, dict[str, str], str]], name: str) -> list[str]:
    return [value for prop, _, value in properties if prop == name]


def text(properties: list[tuple[str, dict[str, str], str]], name: str) -> str:
    (value,) = values(properties, name)
    (part,) = split_unescaped(value, "")
    return part


def test_full_contact_round_trips() -> None:
    card = parse(render_vcard(CONTACT))

    assert text(card, "FN") == CONTACT["displayName"]
    assert split_unescaped(values(card, "N")[0], ";") == ["Dubois", "Émile", "Jean", "Dr.", "Jr."]
    assert split_unescaped(values(card, "ORG")[0], ";") == ["Fabrikam; Europe", "Finance, Treasury"]
    assert text(card, "NOTE") == CONTACT["personalNotes"].replace("\r\n", "\n")
    assert [split_unescaped(v, "")[0] for v in values(card, "EMAIL")] == [
        "emile@fabrikam.example",
        "emile@home.example",
    ]
    assert split_unescaped(values(card, "CATEGORIES")[0], ",") == ["Red category", "Clients, key"]
    assert values(card, "BDAY") == ["19740517"]
    assert values(card, "REV") == ["20240304T083000Z"]
    assert text(card, "X-MS-YOMI-SURNAME") == "デュボワ"
    (address,) = [(params, value) for name, params, value in card if name == "ADR"]
    assert address[0] == {"TYPE": "work"}
    assert split_unescaped(address[1], ";") == [
        "",
        "",
        "1 Rue de la République\nBâtiment B",
        "Lyon",
        "Auvergne-Rhône-Alpes",
        "69002",
        "France",
    ]
    phones = {(params["TYPE"], value) for name, params, value in card if name == "TEL"}
    assert phones == {
        ("work,voice", "+33 4 72 00 00 01"),
        ("home,voice", "+33 4 72 00 00 02"),
        ("cell", "+33 6 00 00 00 03"),
    }
    related = [(params["TYPE"], value) for name, params, value in card if name == "RELATED"]
    assert related == [("spouse", "Camille"), ("child", "Léa"), ("child", "Hugo")]


def test_sparse_contact_gets_a_formatted_name() -> None:
    card = parse(render_vcard({"emailAddresses": [{"address": "x@y.example"}]}))

    assert text(card, "FN") == "x@y.example"
    assert values(card, "N") == []
    assert values(card, "ADR") == []


def test_empty_contact_is_still_valid() -> None:
    card = parse(render_vcard({}))

    assert [name for name, _, _ in card] == ["BEGIN", "VERSION", "FN", "END"]


@pytest.mark.parametrize("character", ["a", "é", "€", "😀"])
def test_folding_keeps_characters_whole(character: str) -> None:
    line = "NOTE:" + character * 200
    folded = fold_line(line)
    physical = folded.encode("utf-8").split(b"\r\n")

    assert all(len(part) <= 75 for part in physical)
    assert all(part.startswith(b" ") for part in physical[1:])
    rest = "".join(part.decode("utf-8")[1:] for part in physical[1:])
    assert physical[0].decode("utf-8") + rest == line


def test_short_line_is_not_folded() -> None:
    line = "FN:" + "x" * 72

    assert fold_line(line) == line
    assert "\r\n" in fold_line(line + "x")


def test_control_characters_never_reach_the_card() -> None:
    data = render_vcard({"displayName": "Ana\x00 Lima\x1b", "personalNotes": "page\x0cbreak\x07"})

    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", data)
    card = parse(data)
    assert text(card, "FN") == "Ana  Lima "
    assert text(card, "NOTE") == "page\nbreak "
