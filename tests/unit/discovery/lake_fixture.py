"""A small lake with two mailboxes, a OneDrive and a site library, written directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from m365lake.lake import Lake

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
SITE_URL = "https://contoso.sharepoint.com/sites/legal"


def message(
    mailbox: str, message_id: str, change: str, captured: datetime, **extra: Any
) -> dict[str, Any]:
    row = {
        "mailbox_id": mailbox,
        "message_id": message_id,
        "change": change,
        "captured_at": captured,
        "received_at": extra.pop("received_at", T0),
        "subject": message_id,
    }
    if change == "deleted":
        row["deleted_at"] = captured
    row.update(extra)
    return row


def drive_item(
    drive: str, item_id: str, change: str, captured: datetime, **extra: Any
) -> dict[str, Any]:
    row = {
        "drive_id": drive,
        "item_id": item_id,
        "change": change,
        "captured_at": captured,
        "modified_at": extra.pop("modified_at", T0),
        "name": item_id,
        "is_folder": False,
    }
    if change == "deleted":
        row["deleted_at"] = captured
    row.update(extra)
    return row


def seed_lake(lake: Lake) -> None:
    """Commit the directory tables and a few item versions, as backups would."""
    with lake.begin(run_id="seed-directory", kind="mail", container=None) as tx:
        tx.write_rows(
            "mailboxes",
            [
                {"mailbox_id": "mb-alice", "user_principal_name": ALICE, "display_name": "Alice"},
                {"mailbox_id": "mb-bob", "user_principal_name": BOB, "display_name": "Bob"},
            ],
            partition={},
        )
        tx.write_rows(
            "drives",
            [
                {
                    "drive_id": "d-alice",
                    "owner_kind": "user",
                    "owner_id": "mb-alice",
                    "owner_name": ALICE,
                    "name": "OneDrive",
                },
                {
                    "drive_id": "d-legal",
                    "owner_kind": "site",
                    "owner_id": "site-legal",
                    "owner_name": "Legal",
                    "site_id": "site-legal",
                    "name": "Documents",
                },
            ],
            partition={},
        )
        tx.write_rows(
            "sites",
            [{"site_id": "site-legal", "web_url": SITE_URL, "display_name": "Legal"}],
            partition={},
        )
        tx.commit()
    with lake.begin(run_id="seed-items", kind="mail", container=None) as tx:
        tx.write_rows(
            "messages",
            [
                message("mb-alice", "m1", "created", T0),
                message("mb-alice", "m1", "updated", T0 + DAY),
                message("mb-alice", "m1", "deleted", T0 + 2 * DAY),
                message("mb-alice", "m2", "created", T0, received_at=T0 + 40 * DAY),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "messages",
            [message("mb-bob", "m3", "created", T0)],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "drive_items",
            [
                drive_item("d-alice", "f1", "created", T0),
                drive_item("d-alice", "f1", "updated", T0 + DAY, modified_at=T0 + DAY),
            ],
            partition={"drive_id": "d-alice"},
        )
        tx.write_rows(
            "drive_items",
            [drive_item("d-legal", "f2", "created", T0)],
            partition={"drive_id": "d-legal"},
        )
        tx.commit()
