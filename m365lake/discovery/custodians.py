"""Resolve custodian references against the lake's mailboxes, drives, sites and teams tables."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from m365lake.discovery.errors import CustodianNotFoundError, InvalidRequestError
from m365lake.discovery.lake_rows import latest_rows
from m365lake.discovery.records import CUSTODIAN_KINDS, CustodianKind
from m365lake.lake import Lake

_LIST_HINTS: dict[CustodianKind, str] = {
    "mailbox": 'm365lake sql "SELECT mailbox_id, user_principal_name FROM mailboxes"',
    "onedrive": (
        "m365lake sql \"SELECT drive_id, owner_name FROM drives WHERE owner_kind = 'user'\""
    ),
    "site": 'm365lake sql "SELECT site_id, web_url, display_name FROM sites"',
    "team": 'm365lake sql "SELECT team_id, display_name FROM teams"',
}
_MATCHED_ON: dict[CustodianKind, str] = {
    "mailbox": "a mailbox_id or user_principal_name",
    "onedrive": "a drive_id, or an owner_name (the owner's user principal name) of a OneDrive",
    "site": "a site_id or web_url",
    "team": "a team_id or display_name",
}
_TABLES: dict[CustodianKind, str] = {
    "mailbox": "mailboxes",
    "onedrive": "drives",
    "site": "sites",
    "team": "teams",
}
_CLOSE_MATCHES = 5


@dataclass(frozen=True)
class ResolvedCustodian:
    """A custodian reference matched to one container in the lake."""

    kind: CustodianKind
    container_id: str
    label: str | None
    requested_as: str


def _normalise_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def _candidates(lake: Lake, kind: CustodianKind) -> list[tuple[str, list[str], str | None]]:
    """Return (container id, other names it can be given by, label) for every container."""
    if kind == "mailbox":
        rows = latest_rows(lake, "mailboxes", ["mailbox_id"], ["mailbox_id", "user_principal_name"])
        return [
            (row["mailbox_id"], [row["user_principal_name"] or ""], row["user_principal_name"])
            for row in rows
        ]
    if kind == "onedrive":
        rows = latest_rows(
            lake, "drives", ["drive_id"], ["drive_id", "owner_kind", "owner_name", "name"]
        )
        return [
            (row["drive_id"], [row["owner_name"] or ""], row["owner_name"] or row["name"])
            for row in rows
            if row["owner_kind"] == "user"
        ]
    if kind == "team":
        rows = latest_rows(lake, "teams", ["team_id"], ["team_id", "display_name"])
        return [(row["team_id"], [row["display_name"] or ""], row["display_name"]) for row in rows]
    rows = latest_rows(lake, "sites", ["site_id"], ["site_id", "web_url", "display_name"])
    return [
        (row["site_id"], [row["web_url"] or ""], row["web_url"] or row["display_name"])
        for row in rows
    ]


def _matches(kind: CustodianKind, reference: str, names: list[str]) -> bool:
    if kind == "site":
        expected = _normalise_url(reference)
        return any(name and _normalise_url(name) == expected for name in names)
    expected = reference.strip().lower()
    return any(name and name.lower() == expected for name in names)


def _close_matches(reference: str, candidates: list[tuple[str, list[str], str | None]]) -> str:
    """Return a sentence naming the archived names closest to ``reference``, or ''."""
    names = {name.lower(): name for _, others, _ in candidates for name in others if name}
    close = difflib.get_close_matches(reference.lower(), list(names), n=_CLOSE_MATCHES)
    if not close:
        return ""
    return f"Close matches: {', '.join(repr(names[name]) for name in close)}. "


def resolve_custodian(lake: Lake, kind: str, reference: str) -> ResolvedCustodian:
    """Match ``reference`` to one archived mailbox, OneDrive, site or team.

    A mailbox is found by mailbox id or user principal name, a OneDrive by drive id or
    its owner's user principal name, a site by site id or URL (without regard to case or
    a trailing slash), and a team by team id or display name (without regard to case).
    Raises CustodianNotFoundError naming what was searched, the closest archived names
    and how to list what the lake has.
    """
    if kind not in CUSTODIAN_KINDS:
        raise InvalidRequestError(
            f"invalid custodian kind {kind!r}: use one of {', '.join(CUSTODIAN_KINDS)}"
        )
    checked: CustodianKind = kind
    text = reference.strip() if isinstance(reference, str) else ""
    if not text:
        raise InvalidRequestError(f"the {kind} reference is empty: give {_MATCHED_ON[checked]}")
    candidates = _candidates(lake, checked)
    for container_id, _names, label in candidates:
        if container_id == text:
            return ResolvedCustodian(checked, container_id, label, text)
    matches = [item for item in candidates if _matches(checked, text, item[1])]
    if len(matches) == 1:
        container_id, _names, label = matches[0]
        return ResolvedCustodian(checked, container_id, label, text)
    if len(matches) > 1:
        ids = ", ".join(sorted(container_id for container_id, _, _ in matches))
        raise InvalidRequestError(
            f"{kind} {text!r} matches {len(matches)} entries in the lake ({ids}); "
            "give the id instead"
        )
    raise CustodianNotFoundError(
        f"no {kind} {text!r} in the lake at {lake.location}: the {_TABLES[checked]} table has no "
        f"row with {_MATCHED_ON[checked]} equal to it ({len(candidates)} archived). "
        f"{_close_matches(text, candidates)}"
        f"List them with: {_LIST_HINTS[checked]}. Only a {kind} that was backed up "
        "(m365lake backup) can be named here.",
        kind=kind,
        reference=text,
    )


def site_drive_ids(lake: Lake, site_ids: set[str]) -> dict[str, str]:
    """Return drive id → site id for every archived drive of the given sites."""
    if not site_ids:
        return {}
    rows = latest_rows(
        lake, "drives", ["drive_id"], ["drive_id", "site_id", "owner_kind", "owner_id"]
    )
    found = {}
    for row in rows:
        site = row["site_id"] if row["site_id"] in site_ids else None
        if site is None and row["owner_kind"] == "site" and row["owner_id"] in site_ids:
            site = row["owner_id"]
        if site is not None:
            found[row["drive_id"]] = site
    return found


def team_channel_ids(lake: Lake, team_ids: set[str]) -> dict[str, str]:
    """Return channel id → team id for every archived channel of the given teams.

    Channels are read from the ``channels`` table and from ``channel_messages``, so a
    channel whose listing row is missing still maps to its team.
    """
    if not team_ids:
        return {}
    found = {}
    for table in ("channels", "channel_messages"):
        # A channel never moves to another team, so any row names its team.
        for row in latest_rows(lake, table, ["channel_id"], ["channel_id", "team_id"]):
            if row["team_id"] in team_ids:
                found[row["channel_id"]] = row["team_id"]
    return found


def linked_files(lake: Lake, channel_ids: set[str]) -> dict[str, set[tuple[str, str]]]:
    """Return channel id → (drive id, item id) of the archived files its messages link to.

    A link is a ``channel_message_parts`` row that the Teams backup resolved to an
    archived drive item. A link to a file whose drive was not archived has no ids.
    """
    if not channel_ids:
        return {}
    keys = ["channel_id", "drive_id", "item_id"]
    found: dict[str, set[tuple[str, str]]] = {}
    for row in latest_rows(lake, "channel_message_parts", keys, keys):
        if row["channel_id"] in channel_ids and row["drive_id"] and row["item_id"]:
            found.setdefault(row["channel_id"], set()).add((row["drive_id"], row["item_id"]))
    return found
