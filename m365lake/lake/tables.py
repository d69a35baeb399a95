"""Arrow schemas of the lake tables and conversion of dict rows into record batches.

Each table contains one row per captured version of an item. All timestamps are
``timestamp[us, tz=UTC]``. Naive datetimes are taken as UTC, and ISO 8601 strings such as
Graph's ``2024-05-01T08:00:00Z`` are parsed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_LIST = pa.list_(pa.string())


def _field(name: str, kind: pa.DataType, *, required: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=not required)


MAILBOXES = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("user_principal_name", pa.string()),
        _field("display_name", pa.string()),
        _field("mail", pa.string()),
        _field("account_enabled", pa.bool_()),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

FOLDERS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("folder_id", pa.string(), required=True),
        _field("parent_folder_id", pa.string()),
        _field("display_name", pa.string()),
        _field("folder_path", pa.string()),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
    ]
)

MESSAGES = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("message_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("folder_id", pa.string()),
        _field("folder_path", pa.string()),
        _field("internet_message_id", pa.string()),
        _field("conversation_id", pa.string()),
        _field("subject", pa.string()),
        _field("from_address", pa.string()),
        _field("from_name", pa.string()),
        _field("sender_address", pa.string()),
        _field("to_addresses", STRING_LIST),
        _field("cc_addresses", STRING_LIST),
        _field("bcc_addresses", STRING_LIST),
        _field("sent_at", TIMESTAMP),
        _field("received_at", TIMESTAMP),
        _field("importance", pa.string()),
        _field("is_read", pa.bool_()),
        _field("is_draft", pa.bool_()),
        _field("has_attachments", pa.bool_()),
        _field("categories", STRING_LIST),
        _field("change_key", pa.string()),
        _field("attachment_count", pa.int32()),
        _field("size", pa.int64()),
        _field("mime_sha256", pa.string()),
        _field("mime_inline", pa.binary()),
    ]
)

ATTACHMENTS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("message_id", pa.string(), required=True),
        _field("mime_sha256", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("part_index", pa.int32(), required=True),
        _field("kind", pa.string()),
        _field("name", pa.string()),
        _field("content_type", pa.string()),
        _field("size", pa.int64()),
        _field("is_inline", pa.bool_()),
        _field("content_id", pa.string()),
        _field("content_sha256", pa.string()),
    ]
)

DRIVE_ITEMS = pa.schema(
    [
        _field("drive_id", pa.string(), required=True),
        _field("item_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("site_id", pa.string()),
        _field("parent_id", pa.string()),
        _field("name", pa.string()),
        _field("path", pa.string()),
        _field("is_folder", pa.bool_()),
        _field("size", pa.int64()),
        _field("mime_type", pa.string()),
        _field("created_at", TIMESTAMP),
        _field("modified_at", TIMESTAMP),
        _field("created_by", pa.string()),
        _field("modified_by", pa.string()),
        _field("etag", pa.string()),
        _field("ctag", pa.string()),
        _field("quickxor_hash", pa.string()),
        _field("content_sha256", pa.string()),
        _field("content_inline", pa.binary()),
        _field("package_type", pa.string()),
        _field("web_url", pa.string()),
        # Graph's ``shared`` facet: ``anonymous``, ``organization`` or ``users``. Files
        # written before these columns existed read them as null.
        _field("shared_scope", pa.string()),
        _field("shared_by", pa.string()),
        _field("shared_at", TIMESTAMP),
    ]
)

DRIVES = pa.schema(
    [
        _field("drive_id", pa.string(), required=True),
        _field("drive_type", pa.string()),
        _field("name", pa.string()),
        _field("owner_kind", pa.string()),
        _field("owner_id", pa.string()),
        _field("owner_name", pa.string()),
        _field("site_id", pa.string()),
        _field("web_url", pa.string()),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

SITES = pa.schema(
    [
        _field("site_id", pa.string(), required=True),
        _field("name", pa.string()),
        _field("display_name", pa.string()),
        _field("web_url", pa.string()),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

FAILURES = pa.schema(
    [
        _field("run_id", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("workload", pa.string()),
        _field("mailbox_id", pa.string()),
        _field("container_id", pa.string()),
        _field("item_id", pa.string()),
        _field("stage", pa.string()),
        _field("outcome", pa.string(), required=True),
        _field("reason", pa.string()),
        _field("detail", pa.string()),
        _field("request_id", pa.string()),
    ]
)

RUNS = pa.schema(
    [
        _field("run_id", pa.string(), required=True),
        _field("kind", pa.string()),
        _field("container", pa.string()),
        _field("started_at", TIMESTAMP),
        _field("finished_at", TIMESTAMP),
        _field("status", pa.string()),
        _field("items_new", pa.int64()),
        _field("items_updated", pa.int64()),
        _field("items_deleted", pa.int64()),
        _field("failures", pa.int64()),
        _field("requests", pa.int64()),
        _field("throttled", pa.int64()),
        _field("throttle_wait_seconds", pa.float64()),
        _field("bytes_downloaded", pa.int64()),
        _field("blobs_written", pa.int64()),
    ]
)

# Discovery tables. Each row is the whole record after one change, so the latest row per
# key is the current state and the earlier rows are its history.
CASES = pa.schema(
    [
        _field("case_id", pa.string(), required=True),
        _field("revision", pa.int64(), required=True),
        _field("change", pa.string(), required=True),
        _field("name", pa.string(), required=True),
        _field("description", pa.string()),
        _field("status", pa.string(), required=True),
        _field("created_at", TIMESTAMP, required=True),
        _field("created_by", pa.string(), required=True),
        _field("closed_at", TIMESTAMP),
        _field("closed_by", pa.string()),
        _field("close_reason", pa.string()),
        _field("actor", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

CASE_CUSTODIANS = pa.schema(
    [
        _field("case_id", pa.string(), required=True),
        _field("custodian_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("status", pa.string(), required=True),
        _field("kind", pa.string(), required=True),
        _field("container_id", pa.string(), required=True),
        _field("label", pa.string()),
        _field("requested_as", pa.string()),
        _field("added_at", TIMESTAMP, required=True),
        _field("added_by", pa.string(), required=True),
        _field("actor", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

CASE_SEARCHES = pa.schema(
    [
        _field("case_id", pa.string(), required=True),
        _field("search_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("status", pa.string(), required=True),
        _field("name", pa.string(), required=True),
        _field("kql", pa.string(), required=True),
        _field("validated", pa.bool_(), required=True),
        _field("saved_at", TIMESTAMP, required=True),
        _field("saved_by", pa.string(), required=True),
        _field("actor", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

HOLDS = pa.schema(
    [
        _field("case_id", pa.string(), required=True),
        _field("hold_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("status", pa.string(), required=True),
        _field("name", pa.string()),
        _field("kind", pa.string(), required=True),
        _field("custodian_ids", STRING_LIST),
        _field("kql", pa.string()),
        _field("date_start", TIMESTAMP),
        _field("date_end", TIMESTAMP),
        _field("placed_at", TIMESTAMP, required=True),
        _field("placed_by", pa.string(), required=True),
        _field("released_at", TIMESTAMP),
        _field("released_by", pa.string()),
        _field("release_reason", pa.string()),
        _field("actor", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

# The audit trail is hash-chained: ``hash`` is the SHA-256 of the event's canonical form,
# which includes ``prev_hash``, the previous event's ``hash`` (m365lake.discovery.audit).
AUDIT_EVENTS = pa.schema(
    [
        _field("seq", pa.int64(), required=True),
        _field("event_id", pa.string(), required=True),
        _field("at", TIMESTAMP, required=True),
        _field("actor", pa.string(), required=True),
        _field("action", pa.string(), required=True),
        _field("case_id", pa.string()),
        _field("parameters", pa.string(), required=True),
        _field("counts", pa.string(), required=True),
        _field("prev_hash", pa.string()),
        _field("hash", pa.string(), required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

RETENTION_POLICIES = pa.schema(
    [
        _field("policy_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("status", pa.string(), required=True),
        _field("name", pa.string(), required=True),
        _field("workload", pa.string(), required=True),
        _field("locations", STRING_LIST),
        _field("basis", pa.string(), required=True),
        _field("action", pa.string(), required=True),
        _field("days", pa.int64(), required=True),
        _field("created_at", TIMESTAMP, required=True),
        _field("created_by", pa.string(), required=True),
        _field("actor", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

# One row per item a restore handled, so running the same restore again creates nothing:
# the planner finds the earlier target item here (m365lake.restore.ledger).
RESTORE_LEDGER = pa.schema(
    [
        _field("restore_id", pa.string(), required=True),
        _field("workload", pa.string(), required=True),
        _field("source_container", pa.string(), required=True),
        _field("source_item_id", pa.string(), required=True),
        _field("source_version", pa.string(), required=True),
        _field("source_path", pa.string()),
        _field("target_container", pa.string(), required=True),
        _field("target_path", pa.string()),
        _field("target_item_id", pa.string()),
        _field("outcome", pa.string(), required=True),
        _field("reason", pa.string()),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

# Calendars and contacts belong to a mailbox and are partitioned by ``mailbox_id`` like
# mail. ``json_inline`` holds Graph's whole JSON of the version (zstd in Parquet);
# ``json_sha256`` names a blob instead when the JSON is large (body, many attendees).
CALENDARS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("calendar_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("name", pa.string()),
        _field("color", pa.string()),
        _field("is_default", pa.bool_()),
        _field("can_edit", pa.bool_()),
        _field("owner_address", pa.string()),
        _field("owner_name", pa.string()),
        _field("change_key", pa.string()),
    ]
)

EVENTS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("event_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("calendar_id", pa.string()),
        # Graph's ``type``: singleInstance, seriesMaster, occurrence or exception.
        _field("event_type", pa.string()),
        _field("series_master_id", pa.string()),
        _field("ical_uid", pa.string()),
        _field("original_start", TIMESTAMP),
        _field("subject", pa.string()),
        _field("organizer_address", pa.string()),
        _field("organizer_name", pa.string()),
        _field("attendee_addresses", STRING_LIST),
        _field("start_at", TIMESTAMP),
        _field("end_at", TIMESTAMP),
        _field("start_timezone", pa.string()),
        _field("end_timezone", pa.string()),
        _field("is_all_day", pa.bool_()),
        _field("is_cancelled", pa.bool_()),
        _field("is_online_meeting", pa.bool_()),
        _field("location", pa.string()),
        _field("recurrence", pa.string()),
        # Original starts (UTC) of the series' cancelled occurrences, on a series master:
        # v1.0 Graph has no property for them, so the backup derives them from the
        # pattern and the series' instances.
        _field("cancelled_occurrences", STRING_LIST),
        _field("sensitivity", pa.string()),
        _field("show_as", pa.string()),
        _field("importance", pa.string()),
        _field("categories", STRING_LIST),
        _field("has_attachments", pa.bool_()),
        _field("attachment_count", pa.int32()),
        _field("body_content_type", pa.string()),
        _field("created_at", TIMESTAMP),
        _field("modified_at", TIMESTAMP),
        _field("change_key", pa.string()),
        _field("size", pa.int64()),
        _field("json_sha256", pa.string()),
        _field("json_inline", pa.binary()),
    ]
)

EVENT_ATTACHMENTS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("event_id", pa.string(), required=True),
        _field("attachment_id", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("kind", pa.string()),
        _field("name", pa.string()),
        _field("content_type", pa.string()),
        _field("size", pa.int64()),
        _field("is_inline", pa.bool_()),
        _field("content_id", pa.string()),
        _field("content_sha256", pa.string()),
    ]
)

CONTACT_FOLDERS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("folder_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("parent_folder_id", pa.string()),
        _field("display_name", pa.string()),
        _field("folder_path", pa.string()),
    ]
)

CONTACTS = pa.schema(
    [
        _field("mailbox_id", pa.string(), required=True),
        _field("contact_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("folder_id", pa.string()),
        _field("folder_path", pa.string()),
        _field("display_name", pa.string()),
        _field("given_name", pa.string()),
        _field("surname", pa.string()),
        _field("company_name", pa.string()),
        _field("job_title", pa.string()),
        _field("email_addresses", STRING_LIST),
        _field("phone_numbers", STRING_LIST),
        _field("categories", STRING_LIST),
        _field("personal_notes", pa.string()),
        _field("created_at", TIMESTAMP),
        _field("modified_at", TIMESTAMP),
        _field("change_key", pa.string()),
        _field("size", pa.int64()),
        _field("json_sha256", pa.string()),
        _field("json_inline", pa.binary()),
    ]
)

# Channels, channel messages and their parts are partitioned by ``team_id``.
TEAMS = pa.schema(
    [
        _field("team_id", pa.string(), required=True),
        _field("display_name", pa.string()),
        _field("description", pa.string()),
        _field("visibility", pa.string()),
        _field("web_url", pa.string()),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
    ]
)

CHANNELS = pa.schema(
    [
        _field("team_id", pa.string(), required=True),
        _field("channel_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("deleted_at", TIMESTAMP),
        _field("display_name", pa.string()),
        _field("description", pa.string()),
        _field("membership_type", pa.string()),
        _field("web_url", pa.string()),
    ]
)

CHANNEL_MESSAGES = pa.schema(
    [
        _field("team_id", pa.string(), required=True),
        _field("channel_id", pa.string(), required=True),
        _field("message_id", pa.string(), required=True),
        _field("change", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        # Set when the archive learns the message is gone from Graph. A message that
        # Teams shows as deleted is still returned, with ``soft_deleted_at`` set.
        _field("deleted_at", TIMESTAMP),
        _field("reply_to_id", pa.string()),
        _field("message_type", pa.string()),
        _field("subject", pa.string()),
        _field("importance", pa.string()),
        _field("from_user_id", pa.string()),
        _field("from_name", pa.string()),
        _field("from_address", pa.string()),
        _field("created_at", TIMESTAMP),
        _field("modified_at", TIMESTAMP),
        _field("edited_at", TIMESTAMP),
        _field("soft_deleted_at", TIMESTAMP),
        _field("body_content_type", pa.string()),
        _field("mentions", STRING_LIST),
        _field("reaction_count", pa.int32()),
        _field("attachment_count", pa.int32()),
        _field("hosted_content_count", pa.int32()),
        _field("web_url", pa.string()),
        _field("etag", pa.string()),
        _field("size", pa.int64()),
        _field("json_sha256", pa.string()),
        _field("json_inline", pa.binary()),
    ]
)

# Hosted contents (images pasted into a message) and file links, one row per part of
# each captured message version. A file link resolves to the archived drive item when
# its drive was archived (``drive_id``/``item_id`` set), else it keeps only the URL.
CHANNEL_MESSAGE_PARTS = pa.schema(
    [
        _field("team_id", pa.string(), required=True),
        _field("channel_id", pa.string(), required=True),
        _field("message_id", pa.string(), required=True),
        _field("part_id", pa.string(), required=True),
        _field("captured_at", TIMESTAMP, required=True),
        _field("run_id", pa.string(), required=True),
        _field("kind", pa.string(), required=True),
        _field("name", pa.string()),
        _field("content_type", pa.string()),
        _field("content_url", pa.string()),
        _field("size", pa.int64()),
        _field("content_sha256", pa.string()),
        _field("drive_id", pa.string()),
        _field("item_id", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "mailboxes": MAILBOXES,
    "folders": FOLDERS,
    "messages": MESSAGES,
    "attachments": ATTACHMENTS,
    "drive_items": DRIVE_ITEMS,
    "drives": DRIVES,
    "sites": SITES,
    "failures": FAILURES,
    "runs": RUNS,
    "cases": CASES,
    "case_custodians": CASE_CUSTODIANS,
    "case_searches": CASE_SEARCHES,
    "holds": HOLDS,
    "audit_events": AUDIT_EVENTS,
    "retention_policies": RETENTION_POLICIES,
    "restore_ledger": RESTORE_LEDGER,
    "calendars": CALENDARS,
    "events": EVENTS,
    "event_attachments": EVENT_ATTACHMENTS,
    "contact_folders": CONTACT_FOLDERS,
    "contacts": CONTACTS,
    "teams": TEAMS,
    "channels": CHANNELS,
    "channel_messages": CHANNEL_MESSAGES,
    "channel_message_parts": CHANNEL_MESSAGE_PARTS,
}

CHANGE_VALUES = ("created", "updated", "deleted")


def table_schema(table: str) -> pa.Schema:
    """Return the schema of ``table``, raising ValueError that lists the known tables."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise ValueError(
            f"unknown table {table!r}; the lake has: {', '.join(sorted(SCHEMAS))}"
        ) from None


def _coerce_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def build_batch(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
    """Convert dict rows into a record batch of ``table``'s schema.

    Missing keys become nulls. Unknown keys raise ValueError so a misspelt column is not
    silently dropped, and a value of the wrong type raises ValueError naming the column.
    """
    schema = table_schema(table)
    names = set(schema.names)
    for index, row in enumerate(rows):
        unknown = row.keys() - names
        if unknown:
            raise ValueError(
                f"row {index} for table {table!r} has unknown columns "
                f"{sorted(unknown)}; the columns are: {', '.join(schema.names)}"
            )

    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_timestamp(field.type):
            values = [_coerce_timestamp(value) for value in values]
        if not field.nullable and any(value is None for value in values):
            raise ValueError(
                f"column {field.name!r} of table {table!r} is required but a row has no value"
            )
        try:
            columns.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as error:
            raise ValueError(
                f"column {field.name!r} of table {table!r} expects {field.type}: {error}"
            ) from error
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def estimate_row_bytes(row: Mapping[str, Any]) -> int:
    """Estimate the memory a buffered row holds, Python object overhead included.

    Counting payload lengths alone put a mail row with 800 bytes of inline MIME at half
    its real size (about 3.4 KB under tracemalloc), so buffers grew to twice their limit.
    Shared objects such as None are counted in every row, which errs on the high side.
    """
    size = sys.getsizeof(row)
    for value in row.values():
        size += sys.getsizeof(value)
        if isinstance(value, (list, tuple)):
            size += sum(sys.getsizeof(item) for item in value)
    return size
