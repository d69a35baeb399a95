"""Rows for the contact tables, built from Graph's contact and contactFolder JSON."""

from __future__ import annotations

import json
from typing import Any

from m365lake.lake import ContentRef
from m365lake.sources.rows import now_utc, parse_graph_time


def contact_json_bytes(contact: dict[str, Any]) -> bytes:
    """Return the JSON kept for one contact version: Graph's object, keys sorted, UTF-8."""
    return json.dumps(contact, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _phone_numbers(contact: dict[str, Any]) -> list[str]:
    numbers = [*(contact.get("businessPhones") or []), *(contact.get("homePhones") or [])]
    if contact.get("mobilePhone"):
        numbers.append(contact["mobilePhone"])
    return [str(number) for number in numbers if number]


def _email_addresses(contact: dict[str, Any]) -> list[str]:
    addresses = (entry.get("address") for entry in contact.get("emailAddresses") or [])
    return [str(address) for address in addresses if address]


def contact_row(
    *,
    mailbox_id: str,
    contact: dict[str, Any],
    folder_id: str,
    folder_path: str,
    change: str,
    run_id: str,
    content: ContentRef,
) -> dict[str, Any]:
    """Build one captured version of a contact; ``content`` is its JSON."""
    return {
        "mailbox_id": mailbox_id,
        "contact_id": contact["id"],
        "change": change,
        "captured_at": now_utc(),
        "run_id": run_id,
        "deleted_at": None,
        "folder_id": folder_id,
        "folder_path": folder_path,
        "display_name": contact.get("displayName"),
        "given_name": contact.get("givenName"),
        "surname": contact.get("surname"),
        "company_name": contact.get("companyName"),
        "job_title": contact.get("jobTitle"),
        "email_addresses": _email_addresses(contact),
        "phone_numbers": _phone_numbers(contact),
        "categories": [str(name) for name in contact.get("categories") or []],
        "personal_notes": contact.get("personalNotes"),
        "created_at": parse_graph_time(contact.get("createdDateTime")),
        "modified_at": parse_graph_time(contact.get("lastModifiedDateTime")),
        "change_key": contact.get("changeKey"),
        "size": content.size,
        "json_sha256": content.sha256,
        "json_inline": content.inline,
    }


def contact_deletion_row(
    *, mailbox_id: str, contact_id: str, folder_id: str, folder_path: str | None, run_id: str
) -> dict[str, Any]:
    """Build the version that records when Graph reported a contact gone (identity only)."""
    deleted_at = now_utc()
    return {
        "mailbox_id": mailbox_id,
        "contact_id": contact_id,
        "change": "deleted",
        "captured_at": deleted_at,
        "run_id": run_id,
        "deleted_at": deleted_at,
        "folder_id": folder_id,
        "folder_path": folder_path,
        "email_addresses": [],
        "phone_numbers": [],
        "categories": [],
    }


def contact_folder_row(
    *,
    mailbox_id: str,
    folder_id: str,
    parent_folder_id: str | None,
    display_name: str,
    folder_path: str,
    change: str,
    run_id: str,
) -> dict[str, Any]:
    captured_at = now_utc()
    return {
        "mailbox_id": mailbox_id,
        "folder_id": folder_id,
        "change": change,
        "captured_at": captured_at,
        "run_id": run_id,
        "deleted_at": captured_at if change == "deleted" else None,
        "parent_folder_id": parent_folder_id,
        "display_name": display_name,
        "folder_path": folder_path,
    }
