"""Carry out a calendar restore plan and verify the series it recreated.

Each single event or series master is created from the archived Graph properties a client
may write, with its times in the event's own zone so the series repeats at the archived
local time. A series is then brought to its archived shape the way Outlook records it:
each archived exception is applied to the new occurrence with the same original start
(PATCH, which makes it an exception), and each cancelled occurrence is deleted. Results
reach the ledger every ``LEDGER_BATCH`` items and at the end.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Set
from datetime import UTC, datetime
from typing import Any

from m365lake.errors import GraphError, RestoreError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.recurrence import from_utc, zone_of
from m365lake.restore import ledger as restore_ledger
from m365lake.restore.calendar_plan import WORKLOAD, ArchivedJson, CalendarPlannedItem
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    Severity,
    VerifyFinding,
)
from m365lake.sources.calendar import series_window, utc_text
from m365lake.sources.calendar_rows import parse_date_time_zone
from m365lake.sources.rows import parse_graph_time

logger = logging.getLogger(__name__)

LEDGER_BATCH = 200
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024
"""Largest attachment sent in one POST; Graph wants an upload session above 3 MB."""

# Properties a client may set on create; everything else Exchange assigns.
WRITABLE = (
    "subject",
    "body",
    "importance",
    "sensitivity",
    "showAs",
    "categories",
    "isAllDay",
    "isOnlineMeeting",
    "location",
    "locations",
    "attendees",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
)
# Properties an exception may change relative to its series.
EXCEPTION_WRITABLE = ("subject", "body", "location", "locations", "attendees", "showAs")
_COLLISION_OUTCOMES = {
    ConflictPolicy.RENAME: Outcome.RENAMED,
    ConflictPolicy.REPLACE: Outcome.REPLACED,
}


def read_archived(lake: Lake, archived: ArchivedJson) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(lake.read_content(archived.sha256, archived.inline))
    return document


def local_time(value: Any, zone: str) -> dict[str, str] | None:
    """Return a Graph ``dateTimeTimeZone`` in ``zone`` for an archived (UTC) one."""
    moment = parse_date_time_zone(value)
    if moment is None:
        return None
    try:
        zone_of(zone)
    except ValueError:
        zone = "UTC"
    return {"dateTime": from_utc(moment, zone).isoformat(), "timeZone": zone}


def create_body(event: dict[str, Any]) -> dict[str, Any]:
    """Return the POST body that recreates an archived single event or series master."""
    zone = str(event.get("originalStartTimeZone") or "UTC")
    body = {name: event[name] for name in WRITABLE if event.get(name) is not None}
    body["start"] = local_time(event.get("start"), zone)
    body["end"] = local_time(event.get("end"), zone)
    if event.get("recurrence"):
        body["recurrence"] = event["recurrence"]
    # Attendee status is the attendee's own response, which a create cannot set.
    body["attendees"] = [
        {"type": a.get("type") or "required", "emailAddress": a.get("emailAddress") or {}}
        for a in event.get("attendees") or []
    ]
    return body


def exception_patch(exception: dict[str, Any], zone: str) -> dict[str, Any]:
    patch: dict[str, Any] = {
        name: exception[name] for name in EXCEPTION_WRITABLE if exception.get(name) is not None
    }
    patch["start"] = local_time(exception.get("start"), zone)
    patch["end"] = local_time(exception.get("end"), zone)
    if "attendees" in patch:
        patch["attendees"] = [
            {"type": a.get("type") or "required", "emailAddress": a.get("emailAddress") or {}}
            for a in patch["attendees"]
        ]
    return patch


async def series_instances(
    graph: GraphClient, mailbox_id: str, master: dict[str, Any]
) -> list[dict[str, Any]]:
    """Return every occurrence and exception of a live series master."""
    start, end = series_window(master, datetime.now(UTC))
    found: list[dict[str, Any]] = []
    async for page in graph.iter_pages(
        f"/users/{mailbox_id}/events/{master['id']}/instances",
        params={"startDateTime": utc_text(start), "endDateTime": utc_text(end)},
        headers={"Prefer": "odata.maxpagesize=100"},
        mailbox=mailbox_id,
    ):
        found.extend(page.get("value") or [])
    return found


def original_start(instance: dict[str, Any]) -> str | None:
    moment = parse_graph_time(instance.get("originalStart")) or parse_date_time_zone(
        instance.get("start")
    )
    return utc_text(moment) if moment else None


class _CalendarRestore:
    def __init__(self, lake: Lake, graph: GraphClient, policy: ConflictPolicy) -> None:
        self.lake = lake
        self.graph = graph
        self.policy = policy
        self.calendars: dict[tuple[str, str], str] = {}

    async def calendar_id(self, mailbox_id: str, name: str) -> str:
        """Return the id of the calendar named ``name``, creating it when missing."""
        key = (mailbox_id, name.casefold())
        if key in self.calendars:
            return self.calendars[key]
        for _ in range(2):
            async for page in self.graph.iter_pages(
                f"/users/{mailbox_id}/calendars", mailbox=mailbox_id
            ):
                for calendar in page.get("value") or []:
                    self.calendars[(mailbox_id, str(calendar["name"]).casefold())] = calendar["id"]
            if key in self.calendars:
                return self.calendars[key]
            try:
                created = await self.graph.send_json(
                    "POST",
                    f"/users/{mailbox_id}/calendars",
                    json={"name": name},
                    mailbox=mailbox_id,
                )
            except GraphError as error:
                # 409: another restore created it since the listing; list again.
                if getattr(error, "status", None) != 409:
                    raise
                continue
            assert created is not None
            self.calendars[key] = created["id"]
            return str(created["id"])
        raise RestoreError(
            f"the calendar {name!r} could not be found or created in mailbox {mailbox_id}; "
            "check that the app has Calendars.ReadWrite"
        )

    async def restore(self, item: CalendarPlannedItem) -> ItemResult:
        if item.action in ("already_present", "unrestorable"):
            outcome = (
                Outcome.ALREADY_PRESENT
                if item.action == "already_present"
                else Outcome.UNRESTORABLE
            )
            return ItemResult(item, outcome, target_item_id=item.live_id, reason=item.reason)
        if item.action == "failed":
            return ItemResult(item, Outcome.FAILED, reason=item.reason)

        outcome = Outcome.CREATED
        if item.action == "collision":
            if self.policy is ConflictPolicy.SKIP:
                return ItemResult(item, Outcome.SKIPPED, reason=item.reason)
            outcome = _COLLISION_OUTCOMES[self.policy]
            if self.policy is ConflictPolicy.REPLACE:
                for live_id in item.colliding_ids:
                    await self.graph.send_json(
                        "DELETE",
                        f"/users/{item.target_container}/events/{live_id}",
                        mailbox=item.target_container,
                    )

        assert item.json is not None
        archived = read_archived(self.lake, item.json)
        mailbox_id = item.target_container
        attached: set[str] = set()
        created: dict[str, Any] | None
        if item.action == "complete":
            # An earlier restore created this event and failed after it: finish that one.
            created = {"id": item.live_id}
        else:
            calendar_id = await self.calendar_id(mailbox_id, item.calendar_name)
            created = await self.graph.send_json(
                "POST",
                f"/users/{mailbox_id}/calendars/{calendar_id}/events",
                json=create_body(archived),
                mailbox=mailbox_id,
            )
        assert created is not None
        try:
            if item.action == "complete":
                created = await self.graph.get_json(
                    f"/users/{mailbox_id}/events/{created['id']}", mailbox=mailbox_id
                )
                attached = await self._attachment_names(mailbox_id, created["id"])
            if archived.get("type") == "seriesMaster":
                await self._shape_series(item, archived, created)
            await self._attach(item, created["id"], skip=attached)
        except (GraphError, RestoreError) as error:
            # The event exists in the tenant now, so the result names it, and a reader of
            # the report can finish or remove it.
            logger.warning(
                "calendar restore: event %s created as %s but not completed: %s",
                item.source_item_id,
                created["id"],
                error,
            )
            reason = f"created as {created['id']} but not completed: {error}"[:500]
            return ItemResult(
                item, Outcome.FAILED, target_item_id=str(created["id"]), reason=reason
            )
        return ItemResult(item, outcome, target_item_id=str(created["id"]))

    async def _shape_series(
        self, item: CalendarPlannedItem, archived: dict[str, Any], created: dict[str, Any]
    ) -> None:
        mailbox_id = item.target_container
        zone = str(archived.get("originalStartTimeZone") or "UTC")
        by_original = {
            original_start(instance): instance
            for instance in await series_instances(self.graph, mailbox_id, created)
        }
        for part in item.exceptions:
            exception = read_archived(self.lake, part)
            instance = by_original.get(original_start(exception))
            if instance is None:
                raise RestoreError(
                    f"the recreated series has no occurrence at {exception.get('originalStart')}"
                    " for an archived exception, so its pattern or time zone differs from the"
                    " archive; the series was created without this exception"
                )
            await self.graph.send_json(
                "PATCH",
                f"/users/{mailbox_id}/events/{instance['id']}",
                json=exception_patch(exception, zone),
                mailbox=mailbox_id,
            )
        for cancelled in item.cancelled:
            instance = by_original.get(cancelled)
            if instance is None:
                continue  # outside the recreated pattern already
            await self.graph.send_json(
                "DELETE", f"/users/{mailbox_id}/events/{instance['id']}", mailbox=mailbox_id
            )

    async def _attachment_names(self, mailbox_id: str, event_id: str) -> set[str]:
        names: set[str] = set()
        async for page in self.graph.iter_pages(
            f"/users/{mailbox_id}/events/{event_id}/attachments",
            params={"$select": "name"},
            mailbox=mailbox_id,
        ):
            names.update(str(a.get("name")) for a in page.get("value") or [])
        return names

    async def _attach(
        self, item: CalendarPlannedItem, event_id: str, *, skip: Set[str] = frozenset()
    ) -> None:
        """Attach the archived files, except those named in ``skip`` (already attached)."""
        for name, content_type, sha256 in item.attachments:
            if name in skip:
                continue
            content = self.lake.blobs.read(sha256)
            if len(content) > MAX_ATTACHMENT_BYTES:
                # NOTE: large event attachments need an upload session, not written yet.
                raise RestoreError(
                    f"attachment {name!r} has {len(content):,} bytes; attachments over 3 MB "
                    "are not restored yet, so the event was created without it"
                )
            await self.graph.send_json(
                "POST",
                f"/users/{item.target_container}/events/{event_id}/attachments",
                json={
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": name,
                    "contentType": content_type,
                    "contentBytes": base64.b64encode(content).decode(),
                },
                mailbox=item.target_container,
            )


async def run_calendar_restore(
    lake: Lake,
    graph: GraphClient,
    plan: list[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
) -> list[ItemResult]:
    """Create the planned events and series; failures are results, never silent."""
    runner = _CalendarRestore(lake, graph, policy)
    results: list[ItemResult] = []
    pending: list[ItemResult] = []
    for item in plan:
        assert isinstance(item, CalendarPlannedItem)
        try:
            result = await runner.restore(item)
        except (GraphError, RestoreError) as error:
            logger.warning(
                "calendar restore: event %s into %s failed: %s",
                item.source_item_id,
                item.target_container,
                error,
            )
            result = ItemResult(item, Outcome.FAILED, reason=str(error)[:500])
        results.append(result)
        pending.append(result)
        if len(pending) >= LEDGER_BATCH:
            restore_ledger.record(lake, restore_id, pending)
            ledger.remember(pending)
            pending = []
    restore_ledger.record(lake, restore_id, pending)
    ledger.remember(pending)
    return results


def _finding(
    result: ItemResult, field: str, expected: Any, actual: Any, severity: Severity
) -> VerifyFinding:
    return VerifyFinding(
        workload=WORKLOAD,
        source_item_id=result.planned.source_item_id,
        target_item_id=result.target_item_id,
        field=field,
        expected=None if expected is None else str(expected),
        actual=None if actual is None else str(actual),
        severity=severity,
    )


async def verify_calendar_restore(
    lake: Lake, graph: GraphClient, results: list[ItemResult]
) -> list[VerifyFinding]:
    """Read each created event back; a series must have the archived instances."""
    findings: list[VerifyFinding] = []
    for result in results:
        planned = result.planned
        if result.outcome not in (Outcome.CREATED, Outcome.RENAMED, Outcome.REPLACED):
            continue
        assert isinstance(planned, CalendarPlannedItem) and planned.json is not None
        mailbox_id = planned.target_container
        archived = read_archived(lake, planned.json)
        try:
            live = await graph.get_json(
                f"/users/{mailbox_id}/events/{result.target_item_id}", mailbox=mailbox_id
            )
        except GraphError as error:
            findings.append(_finding(result, "event", "present", str(error), Severity.MISSING))
            continue
        for name in ("subject", "isAllDay"):
            if live.get(name) != archived.get(name):
                findings.append(
                    _finding(result, name, archived.get(name), live.get(name), Severity.MISMATCH)
                )
        for name in ("start", "end"):
            expected = parse_date_time_zone(archived.get(name))
            actual = parse_date_time_zone(live.get(name))
            if expected != actual:
                findings.append(_finding(result, name, expected, actual, Severity.MISMATCH))
        if archived.get("type") == "seriesMaster":
            findings += await _verify_series(lake, graph, result, planned, live)
    return findings


async def _verify_series(
    lake: Lake,
    graph: GraphClient,
    result: ItemResult,
    planned: CalendarPlannedItem,
    live: dict[str, Any],
) -> list[VerifyFinding]:
    findings: list[VerifyFinding] = []
    instances = await series_instances(graph, planned.target_container, live)
    by_original = {original_start(instance): instance for instance in instances}
    for cancelled in planned.cancelled:
        if cancelled in by_original:
            findings.append(
                _finding(
                    result, f"occurrence:{cancelled}", "cancelled", "present", Severity.MISMATCH
                )
            )
    for part in planned.exceptions:
        exception = read_archived(lake, part)
        original = original_start(exception)
        instance = by_original.get(original)
        expected = parse_date_time_zone(exception.get("start"))
        actual = parse_date_time_zone(instance.get("start")) if instance else None
        if expected != actual:
            findings.append(
                _finding(result, f"exception:{original}", expected, actual, Severity.MISMATCH)
            )
    return findings
