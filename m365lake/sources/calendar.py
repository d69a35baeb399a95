"""Incremental backup of one mailbox's calendars into the lake.

A run lists the calendars, then each calendar's single events and series masters
(``/calendars/{id}/events``), and writes a version of every event whose changeKey differs
from the archived one. For a new or changed series master it reads the series'
instances: the exceptions (moved or edited occurrences) are archived as events of their
own, and the occurrences the pattern expects but Graph no longer returns are recorded on
the master as cancelled. Events, calendars and exceptions that a listing no longer
contains get a ``deleted`` version.

Graph v1.0 tracks event changes only inside a bounded calendarView window (calendarView
delta), and a window would leave past and far-future events unseen. The run therefore
lists every calendar in full, one request per page of events, and relies on changeKeys to
write only what changed. Exchange keeps a series' exceptions inside the master item, so
moving, editing or cancelling an occurrence gives the master a new changeKey.

NOTE: instances of a series without an end date are read only up to ``SERIES_HORIZON``
after now (or after the series start, when later). Exceptions and cancellations beyond
that are archived by the first run after the master next changes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from m365lake.errors import GraphError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake, Transaction
from m365lake.recurrence import (
    from_utc,
    occurrence_starts,
    series_end,
    to_utc,
    zone_of,
)
from m365lake.sources import calendar_rows
from m365lake.sources.calendar_state import CalendarState, load_calendar_state
from m365lake.sources.mail import mailbox_key
from m365lake.sources.mailboxes import Mailbox
from m365lake.sources.rows import (
    error_reason,
    failure_from_error,
    now_utc,
    parse_graph_time,
)

log = logging.getLogger(__name__)

WORKLOAD = "calendar"
PAGE_SIZE = 100
"""Events per page (``Prefer: odata.maxpagesize``); Outlook's default is 10."""

SERIES_HORIZON = timedelta(days=2 * 366)
"""How far ahead of now the instances of a series without an end date are read."""

CHECKPOINT_EVENTS = 5_000
"""Event versions written before the run commits at the end of the current calendar."""


@dataclass
class CalendarBackupResult:
    """Counts of one mailbox's calendar run, as committed."""

    mailbox: Mailbox
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    commit_seq: int | None = None
    calendars: int = 0
    calendars_changed: int = 0
    events_new: int = 0
    events_updated: int = 0
    events_deleted: int = 0
    events_unchanged: int = 0
    exceptions: int = 0
    cancelled_occurrences: int = 0
    attachments: int = 0
    failures: int = 0
    bytes_downloaded: int = 0
    blobs_written: int = 0
    commits: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "calendars": self.calendars,
            "calendars_changed": self.calendars_changed,
            "events_new": self.events_new,
            "events_updated": self.events_updated,
            "events_deleted": self.events_deleted,
            "exceptions": self.exceptions,
            "cancelled_occurrences": self.cancelled_occurrences,
            "attachments": self.attachments,
            "failures": self.failures,
            "bytes_downloaded": self.bytes_downloaded,
            "blobs_written": self.blobs_written,
        }


def series_window(master: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """Return the UTC window that contains every occurrence and exception of a series."""
    start = calendar_rows.parse_date_time_zone(master.get("start")) or now
    recurrence = master.get("recurrence") or {}
    span = recurrence.get("range") or {}
    last = series_end(recurrence)
    if last is not None:
        end = datetime.combine(last, datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
    elif span.get("type") == "numbered":
        starts = expected_starts(master, until=None, strict=False)
        end = (max(starts) if starts else start) + timedelta(days=2)
    else:
        end = max(now, start) + SERIES_HORIZON
    # An exception may be moved away from its occurrence's day. A week of margin on both
    # sides keeps moved exceptions of the first and last occurrences inside the window.
    return start - timedelta(days=7), end + timedelta(days=7)


def series_zone(master: dict[str, Any]) -> str | None:
    """Return the zone a series repeats in, when zoneinfo has its name, else None.

    ``originalStartTimeZone`` comes first; some clients leave a custom name there, and
    then the range's ``recurrenceTimeZone`` is tried.
    """
    span = (master.get("recurrence") or {}).get("range") or {}
    for name in (master.get("originalStartTimeZone"), span.get("recurrenceTimeZone")):
        if not name:
            continue
        try:
            zone_of(str(name))
        except ValueError:
            continue
        return str(name)
    return None


def expected_starts(
    master: dict[str, Any], *, until: datetime | None, strict: bool = True
) -> list[datetime]:
    """Return the UTC starts the pattern of a series master gives, cancelled ones included.

    Raises ValueError for a zone zoneinfo does not know, unless ``strict`` is false: then
    the pattern is expanded in UTC, which can be off by the zone's daylight saving shift.
    """
    start = calendar_rows.parse_date_time_zone(master.get("start"))
    recurrence = master.get("recurrence")
    if start is None or not recurrence:
        return []
    zone = series_zone(master)
    if zone is None:
        if strict:
            raise ValueError(
                f"unknown time zone {master.get('originalStartTimeZone')!r} of the series, "
                "so its occurrences cannot be computed; no cancellations were derived"
            )
        zone = "UTC"
    local_start = from_utc(start, zone)
    local_until = from_utc(until, zone) if until else datetime.max.replace(year=9000)
    return [
        to_utc(moment, zone)
        for moment in occurrence_starts(recurrence, local_start.time(), until=local_until)
    ]


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _CalendarRun:
    def __init__(
        self,
        graph: GraphClient,
        lake: Lake,
        tx: Transaction,
        mailbox: Mailbox,
        state: CalendarState,
        result: CalendarBackupResult,
        checkpoint_events: int,
    ) -> None:
        self.graph = graph
        self.lake = lake
        self.tx = tx
        self.mailbox = mailbox
        self.state = state
        self.result = result
        self.partition = {"mailbox_id": mailbox.mailbox_id}
        self.checkpoint_events = checkpoint_events
        self._since_checkpoint = 0

    @property
    def user_path(self) -> str:
        return f"/users/{self.mailbox.mailbox_id}"

    async def _collection(
        self, url: str, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self.graph.iter_pages(
            url,
            params=params,
            headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"},
            mailbox=self.mailbox.mailbox_id,
        ):
            items.extend(page.get("value") or [])
        return items

    async def execute(self) -> None:
        calendars = await self._collection(f"{self.user_path}/calendars")
        self.result.calendars = len(calendars)
        listed = {calendar["id"] for calendar in calendars}
        self._write_calendar_rows(calendars)
        for calendar in calendars:
            await self.sync_calendar(calendar["id"])
            if self._since_checkpoint >= self.checkpoint_events:
                self.checkpoint()
        for calendar_id, known in self.state.calendars.items():
            if not known.deleted and calendar_id not in listed:
                self._delete_events(self.state.live_events_in(calendar_id))

    def _write_calendar_rows(self, calendars: list[dict[str, Any]]) -> None:
        rows = []
        for calendar in calendars:
            known = self.state.calendars.get(calendar["id"])
            if known and not known.deleted and known.change_key == calendar.get("changeKey"):
                continue
            change = "updated" if known and not known.deleted else "created"
            rows.append(
                calendar_rows.calendar_row(
                    mailbox_id=self.mailbox.mailbox_id,
                    calendar=calendar,
                    change=change,
                    run_id=self.result.run_id,
                )
            )
        listed = {calendar["id"] for calendar in calendars}
        for calendar_id, known in sorted(self.state.calendars.items()):
            if known.deleted or calendar_id in listed:
                continue
            rows.append(
                calendar_rows.calendar_row(
                    mailbox_id=self.mailbox.mailbox_id,
                    calendar={"id": calendar_id, "name": known.name},
                    change="deleted",
                    run_id=self.result.run_id,
                )
            )
        if rows:
            self.tx.write_rows("calendars", rows, partition=self.partition)
        self.result.calendars_changed = len(rows)

    def checkpoint(self) -> None:
        """Commit what the run has archived so far; a rerun skips those events."""
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")
        self.result.commits += 1
        self.tx = self.lake.begin(
            run_id=self.result.run_id, kind=WORKLOAD, container=self.mailbox.mailbox_id
        )
        self._since_checkpoint = 0

    # ---- events --------------------------------------------------------------------

    async def sync_calendar(self, calendar_id: str) -> None:
        url = f"{self.user_path}/calendars/{calendar_id}/events"
        try:
            events = await self._collection(url)
        except ItemNotFoundError as error:
            # Deleted after the calendar list; the next run records its events as deleted.
            self._record_failure(calendar_id, None, "list", "skipped", error)
            return
        seen = {event["id"] for event in events}
        for event in events:
            known = self.state.events.get(event["id"])
            if known and not known.deleted and known.change_key == event.get("changeKey"):
                self.result.events_unchanged += 1
                continue
            await self._capture(event, calendar_id)
        self._delete_events(self.state.live_events_in(calendar_id) - seen)

    async def _capture(self, event: dict[str, Any], calendar_id: str) -> None:
        """Archive one single event or series master, with a series' exceptions."""
        event_id = event["id"]
        try:
            attachments = await self._attachments(event) if event.get("hasAttachments") else []
            instances: list[dict[str, Any]] = []
            if event.get("type") == "seriesMaster":
                start, end = series_window(event, now_utc())
                instances = await self._collection(
                    f"{self.user_path}/events/{event_id}/instances",
                    {"startDateTime": utc_text(start), "endDateTime": utc_text(end)},
                )
        except ItemNotFoundError as error:
            # Deleted between the listing and this request: the next listing misses it.
            self._record_failure(calendar_id, event_id, "fetch", "skipped", error)
            return
        except GraphError as error:
            # Nothing is written, so the next run finds the changeKey new and retries.
            self._record_failure(calendar_id, event_id, "fetch", "failed", error)
            return

        cancelled: list[str] = []
        if event.get("type") == "seriesMaster":
            cancelled = self._cancelled_occurrences(event, instances, calendar_id)
            self._store_exceptions(event_id, calendar_id, instances)
        self._store_event(event, calendar_id, len(attachments), cancelled)
        for attachment, content in attachments:
            self._store_attachment(event_id, attachment, content)

    def _cancelled_occurrences(
        self, master: dict[str, Any], instances: list[dict[str, Any]], calendar_id: str
    ) -> list[str]:
        _, end = series_window(master, now_utc())
        try:
            expected = {utc_text(moment) for moment in expected_starts(master, until=end)}
        except ValueError as error:
            # RecurrenceError (a malformed pattern) or an unknown zone: guessing would
            # record wrong cancellations, which a restore would then apply.
            self._record_failure(calendar_id, master["id"], "recurrence", "skipped", error)
            return []
        present = set()
        for instance in instances:
            original = parse_graph_time(instance.get("originalStart"))
            if original is None:
                original = calendar_rows.parse_date_time_zone(instance.get("start"))
            if original is not None:
                present.add(utc_text(original))
        cancelled = sorted(expected - present)
        self.result.cancelled_occurrences += len(cancelled)
        return cancelled

    def _store_exceptions(
        self, master_id: str, calendar_id: str, instances: list[dict[str, Any]]
    ) -> None:
        current = {i["id"]: i for i in instances if i.get("type") == "exception"}
        for exception_id, exception in sorted(current.items()):
            known = self.state.events.get(exception_id)
            if known and not known.deleted and known.change_key == exception.get("changeKey"):
                continue
            self._store_event(exception, calendar_id, 0, [])
            self.result.exceptions += 1
        self._delete_events(self.state.live_exceptions_of(master_id) - set(current))

    def _store_event(
        self,
        event: dict[str, Any],
        calendar_id: str,
        attachment_count: int,
        cancelled: list[str],
    ) -> None:
        data = calendar_rows.event_json_bytes(event)
        content = self.lake.store_content(data)
        new_blob = content.created
        known = self.state.events.get(event["id"])
        change = "updated" if known is not None and not known.deleted else "created"
        row = calendar_rows.event_row(
            mailbox_id=self.mailbox.mailbox_id,
            event=event,
            calendar_id=calendar_id,
            change=change,
            run_id=self.result.run_id,
            content=content,
            attachment_count=attachment_count,
            cancelled_occurrences=cancelled,
        )
        self.tx.write_rows("events", [row], partition=self.partition)
        self.result.blobs_written += int(new_blob)
        self.result.bytes_downloaded += len(data)
        if change == "created":
            self.result.events_new += 1
        else:
            self.result.events_updated += 1
        self._since_checkpoint += 1

    async def _attachments(self, event: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
        """Return each file attachment with its bytes; other kinds come without content."""
        url = f"{self.user_path}/events/{event['id']}/attachments"
        found = []
        for attachment in await self._collection(url):
            content = b""
            if attachment.get("@odata.type") == "#microsoft.graph.fileAttachment":
                encoded = attachment.get("contentBytes")
                if encoded is None:
                    content = await self.graph.get_bytes(
                        f"{url}/{attachment['id']}/$value", mailbox=self.mailbox.mailbox_id
                    )
                else:
                    content = base64.b64decode(encoded)
            found.append((attachment, content))
        return found

    def _store_attachment(self, event_id: str, attachment: dict[str, Any], content: bytes) -> None:
        sha256 = None
        if attachment.get("@odata.type") == "#microsoft.graph.fileAttachment":
            sha256, created = self.lake.blobs.store(content)
            self.result.blobs_written += int(created)
            self.result.bytes_downloaded += len(content)
        # Graph's JSON without contentBytes: the bytes live in the blob named by the row.
        self.tx.write_rows(
            "event_attachments",
            [
                calendar_rows.attachment_row(
                    mailbox_id=self.mailbox.mailbox_id,
                    event_id=event_id,
                    attachment=attachment,
                    content_sha256=sha256,
                    run_id=self.result.run_id,
                )
            ],
            partition=self.partition,
        )
        self.result.attachments += 1

    def _delete_events(self, event_ids: set[str]) -> None:
        rows = []
        for event_id in sorted(event_ids):
            known = self.state.events[event_id]
            rows.append(
                calendar_rows.event_deletion_row(
                    mailbox_id=self.mailbox.mailbox_id,
                    event_id=event_id,
                    calendar_id=known.calendar_id,
                    event_type=known.event_type,
                    series_master_id=known.series_master_id,
                    run_id=self.result.run_id,
                )
            )
            if known.event_type == "seriesMaster":
                for exception_id in sorted(self.state.live_exceptions_of(event_id)):
                    exception = self.state.events[exception_id]
                    rows.append(
                        calendar_rows.event_deletion_row(
                            mailbox_id=self.mailbox.mailbox_id,
                            event_id=exception_id,
                            calendar_id=exception.calendar_id,
                            event_type=exception.event_type,
                            series_master_id=event_id,
                            run_id=self.result.run_id,
                        )
                    )
        if rows:
            self.tx.write_rows("events", rows, partition=self.partition)
        self.result.events_deleted += len(rows)

    # ---- run row, failures ---------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        self.result.finished_at = now_utc()
        # The mailbox's directory entry makes the custodian resolvable (holds, restores)
        # in an archive that contains no mail of it.
        directory_entry = self.mailbox.row()
        key = mailbox_key(self.mailbox.mailbox_id)
        if self.lake.state(key) != directory_entry:
            captured = {"captured_at": self.result.finished_at, "run_id": self.result.run_id}
            self.tx.write_rows("mailboxes", [{**directory_entry, **captured}], partition={})
            self.tx.set_state(key, directory_entry)
        self.tx.write_rows("runs", [_run_row(self.result)], partition={})
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")
        self.result.commits += 1
        return manifest

    def _record_failure(
        self,
        calendar_id: str | None,
        event_id: str | None,
        stage: str,
        outcome: str,
        error: Exception,
    ) -> None:
        reason = error_reason(error)
        log.warning(
            "calendar of %s: %s of event %s %s: %s",
            self.mailbox.user_principal_name,
            stage,
            event_id,
            outcome,
            reason,
        )
        self.tx.write_rows(
            "failures",
            [
                failure_from_error(
                    error,
                    workload=WORKLOAD,
                    mailbox_id=self.mailbox.mailbox_id,
                    run_id=self.result.run_id,
                    container_id=calendar_id,
                    item_id=event_id,
                    stage=stage,
                    outcome=outcome,
                )
            ],
            partition=self.partition,
        )
        self.result.failures += 1


async def backup_calendars_of(
    graph: GraphClient,
    lake: Lake,
    mailbox: Mailbox,
    *,
    run_id: str,
    checkpoint_events: int = CHECKPOINT_EVENTS,
) -> CalendarBackupResult:
    """Archive the calendar changes of ``mailbox`` since its last commit."""
    result = CalendarBackupResult(mailbox=mailbox, run_id=run_id, started_at=now_utc())
    tx = lake.begin(run_id=run_id, kind=WORKLOAD, container=mailbox.mailbox_id)
    run = None
    started = time.monotonic()
    try:
        # Read the archived state after the transaction has taken its starting point,
        # so a commit by a concurrent run in between is caught as a conflict.
        state = await asyncio.to_thread(load_calendar_state, lake, mailbox.mailbox_id)
        run = _CalendarRun(graph, lake, tx, mailbox, state, result, checkpoint_events)
        await run.execute()
        run.finish()
    finally:
        (run.tx if run else tx).abort()
    log.info(
        "calendars of %s committed in %.1f s: %d new, %d updated, %d deleted, %d failures",
        mailbox.user_principal_name,
        time.monotonic() - started,
        result.events_new,
        result.events_updated,
        result.events_deleted,
        result.failures,
    )
    return result


def _run_row(result: CalendarBackupResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "kind": WORKLOAD,
        "container": result.mailbox.mailbox_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": "succeeded",
        "items_new": result.events_new,
        "items_updated": result.events_updated,
        "items_deleted": result.events_deleted,
        "failures": result.failures,
        "bytes_downloaded": result.bytes_downloaded,
        "blobs_written": result.blobs_written,
    }
