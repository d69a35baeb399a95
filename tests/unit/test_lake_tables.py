"""Table schemas and conversion of dict rows to record batches."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from m365lake.lake import SCHEMAS, build_batch, table_schema

CONTRACT_TABLES = {
    "mailboxes",
    "folders",
    "messages",
    "attachments",
    "drive_items",
    "drives",
    "sites",
    "failures",
    "runs",
    "cases",
    "case_custodians",
    "case_searches",
    "holds",
    "audit_events",
    "retention_policies",
    "restore_ledger",
    "calendars",
    "events",
    "event_attachments",
    "contact_folders",
    "contacts",
    "teams",
    "channels",
    "channel_messages",
    "channel_message_parts",
}


def test_every_contract_table_has_schema() -> None:
    assert set(SCHEMAS) == CONTRACT_TABLES


@pytest.mark.parametrize("table", sorted(CONTRACT_TABLES))
def test_timestamps_are_utc_microseconds(table: str) -> None:
    for field in table_schema(table):
        if pa.types.is_timestamp(field.type):
            assert field.type == pa.timestamp("us", tz="UTC"), field.name


def test_messages_schema_columns() -> None:
    schema = table_schema("messages")

    assert schema.field("to_addresses").type == pa.list_(pa.string())
    assert schema.field("categories").type == pa.list_(pa.string())
    assert schema.field("attachment_count").type == pa.int32()
    assert schema.field("size").type == pa.int64()
    assert schema.field("mime_inline").type == pa.binary()


def test_unknown_table_lists_known_tables() -> None:
    with pytest.raises(ValueError, match="messages"):
        table_schema("mesages")


def test_build_batch_fills_missing_with_null() -> None:
    batch = build_batch(
        "failures", [{"run_id": "r", "captured_at": datetime.now(UTC), "outcome": "skipped"}]
    )

    assert batch.num_rows == 1
    assert batch.column("reason").to_pylist() == [None]


def test_build_batch_parses_graph_timestamps() -> None:
    row = {
        "mailbox_id": "u",
        "message_id": "m",
        "change": "created",
        "run_id": "r",
        "captured_at": "2024-05-01T08:00:00Z",
        "sent_at": "2024-05-01T07:59:00Z",
    }

    batch = build_batch("messages", [row])

    assert batch.column("captured_at")[0].as_py() == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert batch.column("sent_at")[0].as_py() == datetime(2024, 5, 1, 7, 59, tzinfo=UTC)


def test_build_batch_rejects_unknown_column() -> None:
    with pytest.raises(ValueError, match="subjekt"):
        build_batch("messages", [{"mailbox_id": "u", "subjekt": "typo"}])


def test_build_batch_rejects_missing_required() -> None:
    with pytest.raises(ValueError, match="mailbox_id"):
        build_batch("mailboxes", [{"run_id": "r", "captured_at": datetime.now(UTC)}])


def test_build_batch_names_column_on_type_error() -> None:
    row = {
        "mailbox_id": "u",
        "message_id": "m",
        "change": "created",
        "run_id": "r",
        "captured_at": datetime.now(UTC),
        "size": "big",
    }

    with pytest.raises(ValueError, match="'size'"):
        build_batch("messages", [row])
