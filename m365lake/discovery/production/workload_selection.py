"""Choose the calendar, contacts and Teams families of a production.

A mailbox custodian brings the events and contacts of its mailbox, and a team custodian
the messages of its channels. A hit brings its whole family: an occurrence or exception
of a recurring meeting brings the series (produced as one ``.ics``), and a Teams message
brings its thread (the root post and every reply). Each family is named by its series
master or thread root, so two hits in one series or thread make one family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from m365lake.discovery.custodians import team_channel_ids
from m365lake.discovery.lake_rows import latest_rows
from m365lake.discovery.production.workload_rows import (
    WORKLOAD_TABLES,
    latest_versions,
)
from m365lake.discovery.records import Custodian
from m365lake.discovery.search_api import SearchHit
from m365lake.lake import Lake
from m365lake.search.documents import doc_id_of

# Families of these workloads follow mail (0) and files (1) within a custodian.
WORKLOAD_ORDER: Mapping[str, int] = {"calendar": 2, "contacts": 3, "teams": 4}


@dataclass(frozen=True)
class WorkloadFamily:
    """One family of a rendered workload: its first member's version and its custodian."""

    workload: str
    custodian: Custodian
    location: str
    row: dict[str, Any]
    """The series master, the single event, the contact or the thread's root message."""
    order: tuple[Any, ...]


@dataclass
class WorkloadSelection:
    families: list[WorkloadFamily]
    out_of_scope: int
    not_found: list[str]


def _scope(lake: Lake, custodians: Sequence[Custodian]) -> dict[tuple[str, str], Custodian]:
    """Return (workload, container id) → custodian for the calendar, contacts and Teams."""
    scope: dict[tuple[str, str], Custodian] = {}
    for custodian in custodians:
        if custodian.kind == "mailbox":
            scope.setdefault(("calendar", custodian.container_id), custodian)
            scope.setdefault(("contacts", custodian.container_id), custodian)
    teams = {item.container_id: item for item in custodians if item.kind == "team"}
    for channel, team in sorted(team_channel_ids(lake, set(teams)).items()):
        scope.setdefault(("teams", channel), teams[team])
    return scope


def _family_heads(lake: Lake, workload: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the first member of each hit's family: series master or thread root.

    A hit whose master or root has no archived version left heads its family itself.
    """
    spec = WORKLOAD_TABLES[workload]
    heads: dict[tuple[str, str], dict[str, Any]] = {}
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        head_id = row[spec.item]
        if workload == "calendar" and row.get("series_master_id"):
            head_id = row["series_master_id"]
        elif workload == "teams" and row.get("reply_to_id"):
            head_id = row["reply_to_id"]
        key = (str(row[spec.container]), str(head_id))
        if head_id == row[spec.item]:
            heads[key] = row
        else:
            wanted.setdefault(key, row)
    missing = [key for key in wanted if key not in heads]
    for row in latest_versions(lake, workload, keys=missing):
        heads[(str(row[spec.container]), str(row[spec.item]))] = row
    for key, row in wanted.items():
        heads.setdefault(key, row)
    return list(heads.values())


def _order(rank: int, workload: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    if workload == "calendar":
        moment = row.get("start_at")
        text = (row.get("subject") or "").casefold()
    elif workload == "contacts":
        moment = None
        text = (row.get("display_name") or "").casefold()
    else:
        moment = row.get("created_at")
        text = ""
    return (
        rank,
        WORKLOAD_ORDER[workload],
        text if workload == "contacts" else "",
        moment is None,
        moment.timestamp() if moment is not None else 0.0,
        str(row[WORKLOAD_TABLES[workload].item]),
        text,
    )


def _locations(lake: Lake) -> dict[tuple[str, str], str]:
    """Return (workload, container) → location: the mailbox UPN, or team and channel names."""
    found: dict[tuple[str, str], str] = {}
    for row in latest_rows(
        lake, "mailboxes", ["mailbox_id"], ["mailbox_id", "user_principal_name"]
    ):
        name = row["user_principal_name"] or row["mailbox_id"]
        found[("calendar", row["mailbox_id"])] = f"{name}/Calendar"
        found[("contacts", row["mailbox_id"])] = f"{name}/Contacts"
    teams = {
        row["team_id"]: row["display_name"] or row["team_id"]
        for row in latest_rows(lake, "teams", ["team_id"], ["team_id", "display_name"])
    }
    channels = latest_rows(
        lake, "channels", ["channel_id"], ["channel_id", "team_id", "display_name"]
    )
    for row in channels:
        team = teams.get(row["team_id"], row["team_id"])
        found[("teams", row["channel_id"])] = f"{team}/{row['display_name'] or row['channel_id']}"
    return found


def select_workload_families(
    lake: Lake, hits: Sequence[SearchHit], custodians: Sequence[Custodian]
) -> WorkloadSelection:
    """Return the families of the calendar, contacts and Teams hits in the custodians' scope.

    ``custodians`` are in production order, which ranks the families.
    """
    scope = _scope(lake, custodians)
    ranks = {custodian.custodian_id: rank for rank, custodian in enumerate(custodians)}
    locations = _locations(lake)
    result = WorkloadSelection([], 0, [])
    for workload, spec in WORKLOAD_TABLES.items():
        in_scope = []
        for hit in hits:
            if hit.workload != workload:
                continue
            if (workload, hit.container_id) in scope:
                in_scope.append((hit.container_id, hit.item_id))
            else:
                result.out_of_scope += 1
        if not in_scope:
            continue
        rows = latest_versions(lake, workload, keys=in_scope)
        found = {(str(row[spec.container]), str(row[spec.item])) for row in rows}
        result.not_found += [
            doc_id_of(workload, container, item)
            for container, item in in_scope
            if (container, item) not in found
        ]
        for row in _family_heads(lake, workload, rows):
            container = str(row[spec.container])
            custodian = scope[(workload, container)]
            result.families.append(
                WorkloadFamily(
                    workload=workload,
                    custodian=custodian,
                    location=locations.get((workload, container), f"{workload}:{container}"),
                    row=row,
                    order=_order(ranks[custodian.custodian_id], workload, row),
                )
            )
    return result
