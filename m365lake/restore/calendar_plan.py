"""Select archived events for a restore and plan it: one plan line per single or series.

A series is restored as a unit: its master, then its exceptions and cancellations, so a
plan line stands for the master and carries the exceptions' archived JSON and the
cancelled occurrences. An event is already present when it is live at the target (same id,
restoring in place) or an earlier restore created it (ledger). An event an earlier restore
created but failed to complete (a series without its exceptions) is completed in place. It
collides when a live single or master in the target calendar has the same subject and start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.discovery.search_api import search_hits
from m365lake.errors import GraphError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import ConflictPolicy, PlannedItem, RestoreTarget
from m365lake.restore.selection import Selection, check_selection, mailbox_of
from m365lake.sources.calendar_rows import parse_date_time_zone

logger = logging.getLogger(__name__)

WORKLOAD = "calendar"


@dataclass(frozen=True)
class ArchivedJson:
    """Location of an archived event version's Graph JSON: inline bytes or a blob."""

    sha256: str
    inline: bytes | None


@dataclass(frozen=True)
class CalendarPlannedItem(PlannedItem):
    """A plan line with what the executor needs: the series' parts and the calendar."""

    calendar_name: str = "Calendar"
    """Name of the archived calendar; the target calendar of that name receives the event."""
    json: ArchivedJson | None = None
    exceptions: tuple[ArchivedJson, ...] = ()
    cancelled: tuple[str, ...] = ()
    """Original starts (UTC, ISO-8601) of the series' cancelled occurrences."""
    attachments: tuple[tuple[str, str, str], ...] = ()
    """(name, content type, content SHA-256) of each archived file attachment."""
    live_id: str | None = None
    """The live event that already is the restored one."""
    colliding_ids: tuple[str, ...] = ()


def _latest_versions(lake: Lake, as_of: datetime | None) -> list[dict[str, Any]]:
    with connect(lake) as db:
        if as_of is None:
            cursor = db.execute(
                "SELECT * FROM event_versions QUALIFY row_number() OVER "
                "(PARTITION BY mailbox_id, event_id ORDER BY captured_at DESC) = 1"
            )
        else:
            cursor = db.execute("SELECT * FROM events_as_of(?)", [as_of])
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def select_events(lake: Lake, selection: Selection) -> list[dict[str, Any]]:
    """Return the archived singles and series masters the selection picks.

    Events are restored only when the selection names the ``calendar`` workload. An
    exception's id selects its whole series. The rows of the exceptions of each picked
    series are returned too, after the masters; ``plan_calendar_restore`` groups them.
    """
    check_selection(selection)
    if WORKLOAD not in selection.workloads:
        return []
    mailbox = mailbox_of(lake, selection.custodian) if selection.custodian else None
    if selection.custodian and mailbox is None:
        return []
    matched = None
    if selection.kql:
        matched = {
            (hit.container_id, hit.item_id)
            for hit in search_hits(lake, selection.kql, purpose="the restore --kql")
            if hit.workload == WORKLOAD
        }
    rows = [
        row
        for row in _latest_versions(lake, selection.as_of)
        if mailbox is None or row["mailbox_id"] == mailbox
    ]
    ids = set(selection.item_ids)
    heads: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["mailbox_id"], row["event_id"])
        picked = (not ids or row["event_id"] in ids) and (matched is None or key in matched)
        if not picked:
            continue
        if row["event_type"] == "exception" and row["series_master_id"]:
            key = (row["mailbox_id"], row["series_master_id"])
        heads[key] = row
    by_id = {(row["mailbox_id"], row["event_id"]): row for row in rows}
    masters = [by_id.get(key, row) for key, row in heads.items()]
    masters = [row for row in masters if row["event_type"] != "exception"]
    master_rows = {(row["mailbox_id"], row["event_id"]): row for row in masters}
    exceptions = [
        row
        for row in rows
        if row["event_type"] == "exception"
        and (row["mailbox_id"], row["series_master_id"]) in master_rows
        and _exception_kept(row, master_rows[(row["mailbox_id"], row["series_master_id"])])
    ]
    masters.sort(
        key=lambda row: (row["mailbox_id"], row["start_at"] or datetime.min, row["event_id"])
    )
    logger.info("restore selection picked %d events or series", len(masters))
    return masters + exceptions


def _exception_kept(exception: dict[str, Any], master: dict[str, Any]) -> bool:
    """Return whether an exception was part of its series at the series' archived state.

    An exception deleted while its master lived on was cancelled afterwards. One deleted
    with its master, or after it, went with the series and is restored with it.
    """
    gone = exception.get("deleted_at")
    if gone is None:
        return True
    master_gone = master.get("deleted_at")
    return master_gone is not None and gone >= master_gone


def _calendar_names(lake: Lake) -> dict[tuple[str, str], str]:
    with connect(lake) as db:
        rows = db.execute(
            "SELECT mailbox_id, calendar_id, name FROM calendar_versions QUALIFY row_number() "
            "OVER (PARTITION BY mailbox_id, calendar_id ORDER BY captured_at DESC) = 1"
        ).fetchall()
    return {(mailbox_id, calendar_id): name for mailbox_id, calendar_id, name in rows}


def _attachments(lake: Lake, mailbox_id: str, event_id: str) -> tuple[tuple[str, str, str], ...]:
    with connect(lake) as db:
        rows = db.execute(
            "SELECT name, content_type, content_sha256 FROM event_attachments "
            "WHERE mailbox_id = ? AND event_id = ? AND content_sha256 IS NOT NULL "
            "ORDER BY name, attachment_id",
            [mailbox_id, event_id],
        ).fetchall()
    return tuple(
        (str(name), str(kind or "application/octet-stream"), sha) for name, kind, sha in rows
    )


async def _live_heads(
    graph: GraphClient, mailbox_id: str, cache: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Return the live singles and masters of the mailbox (every calendar), read once."""
    if mailbox_id not in cache:
        found: list[dict[str, Any]] = []
        async for page in graph.iter_pages(
            f"/users/{mailbox_id}/events",
            params={"$select": "subject,start,type"},
            headers={"Prefer": "odata.maxpagesize=100"},
            mailbox=mailbox_id,
        ):
            found.extend(page.get("value") or [])
        cache[mailbox_id] = found
    return cache[mailbox_id]


async def _is_live(graph: GraphClient, mailbox_id: str, event_id: str) -> bool:
    try:
        await graph.get_json(
            f"/users/{mailbox_id}/events/{event_id}",
            params={"$select": "id"},
            mailbox=mailbox_id,
        )
    except ItemNotFoundError:
        return False
    return True


async def plan_calendar_restore(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
) -> list[PlannedItem]:
    """Plan one line per archived single event or series (with its exceptions)."""
    del policy, as_of  # the executor applies the policy; rows are already as of the time
    names = _calendar_names(lake)
    exceptions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["event_type"] == "exception":
            exceptions.setdefault((row["mailbox_id"], row["series_master_id"]), []).append(row)
    live_cache: dict[str, list[dict[str, Any]]] = {}
    plan: list[PlannedItem] = []
    for row in rows:
        if row["event_type"] == "exception":
            continue
        mailbox_id = row["mailbox_id"]
        target_mailbox = target.mailbox_id or mailbox_id
        calendar_name = target.restore_folder or names.get(
            (mailbox_id, row["calendar_id"]), "Calendar"
        )
        parts = sorted(
            exceptions.get((mailbox_id, row["event_id"]), []),
            key=lambda e: (e["original_start"] or datetime.min, e["event_id"]),
        )
        action: str = "create"
        reason: str | None = None
        live_id: str | None = None
        colliding: tuple[str, ...] = ()
        key = (WORKLOAD, mailbox_id, row["event_id"], row["json_sha256"], target_mailbox)
        earlier = ledger.find(*key)
        unfinished = ledger.find_unfinished(*key)
        try:
            if row["json_sha256"] is None:
                action, reason = "unrestorable", "Graph's JSON of this event was not archived"
            elif earlier and await _is_live(graph, target_mailbox, earlier):
                action, reason, live_id = (
                    "already_present",
                    f"restored before as {earlier}",
                    earlier,
                )
            elif unfinished and await _is_live(graph, target_mailbox, unfinished):
                action, live_id = "complete", unfinished
                reason = f"an earlier restore created it as {unfinished} but did not complete it"
            elif target_mailbox == mailbox_id and await _is_live(
                graph, mailbox_id, row["event_id"]
            ):
                action, reason, live_id = "already_present", "the event is live", row["event_id"]
            else:
                start = row["start_at"]
                colliding = tuple(
                    str(live["id"])
                    for live in await _live_heads(graph, target_mailbox, live_cache)
                    if (live.get("subject") or "") == (row["subject"] or "")
                    and parse_date_time_zone(live.get("start")) == start
                )
                if colliding:
                    action = "collision"
                    reason = (
                        f"a live event with the same subject and start: {colliding[0]}; "
                        "run again with --conflict replace to replace it or --conflict rename "
                        "to restore beside it"
                    )
        except GraphError as error:
            # Only this event's target could not be checked; the other events still go.
            logger.warning(
                "calendar restore: checking the target of event %s in %s failed: %s",
                row["event_id"],
                target_mailbox,
                error,
            )
            action, live_id = "failed", None
            reason = f"the target could not be checked before restoring: {error}"[:500]
        plan.append(
            CalendarPlannedItem(
                workload=WORKLOAD,
                source_container=mailbox_id,
                source_item_id=row["event_id"],
                source_version=row["json_sha256"] or "",
                source_path=f"{names.get((mailbox_id, row['calendar_id']), '')}/"
                f"{row['subject'] or ''}",
                target_container=target_mailbox,
                target_path=f"{calendar_name}/{row['subject'] or ''}",
                action=action,
                reason=reason,
                calendar_name=calendar_name,
                json=ArchivedJson(row["json_sha256"], row.get("json_inline"))
                if row["json_sha256"]
                else None,
                exceptions=tuple(
                    ArchivedJson(e["json_sha256"], e.get("json_inline"))
                    for e in parts
                    if e["json_sha256"]
                ),
                cancelled=tuple(row.get("cancelled_occurrences") or ()),
                attachments=_attachments(lake, mailbox_id, row["event_id"]),
                live_id=live_id,
                colliding_ids=colliding,
            )
        )
    return plan
