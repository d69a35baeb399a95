"""Rows for the drive tables, built from Graph driveItem JSON and the archived content."""

from __future__ import annotations

from typing import Any

from m365lake.lake import ContentRef
from m365lake.sources.rows import now_utc, parse_graph_time

# Properties requested in drive delta. Delta has no parentReference.path, so paths are
# derived from parentReference.id (see drive_tree).
ITEM_SELECT = ",".join(
    [
        "id",
        "name",
        "size",
        "eTag",
        "cTag",
        "createdDateTime",
        "lastModifiedDateTime",
        "createdBy",
        "lastModifiedBy",
        "parentReference",
        "webUrl",
        "file",
        "folder",
        "package",
        "malware",
        "deleted",
        "root",
        "shared",
    ]
)


def _identity_name(identity_set: dict[str, Any] | None) -> str | None:
    """Return the user's email or display name from an identitySet such as ``createdBy``."""
    if not identity_set:
        return None
    for key in ("user", "application", "device"):
        identity = identity_set.get(key)
        if isinstance(identity, dict):
            value = identity.get("email") or identity.get("displayName") or identity.get("id")
            if value:
                return str(value)
    return None


def is_folder(item: dict[str, Any]) -> bool:
    return "folder" in item or "root" in item


def quickxor_of(item: dict[str, Any]) -> str | None:
    hashes = (item.get("file") or {}).get("hashes") or {}
    value = hashes.get("quickXorHash")
    return str(value) if value else None


def item_row(
    *,
    drive_id: str,
    site_id: str | None,
    item: dict[str, Any],
    path: str,
    change: str,
    run_id: str,
    content: ContentRef | None,
) -> dict[str, Any]:
    """Build one captured version of a drive item; ``content`` is None for folders and gaps."""
    parent = item.get("parentReference") or {}
    file_facet = item.get("file") or {}
    package = item.get("package") or {}
    # Graph marks ``scope`` deprecated in favour of the permissions API. That API costs
    # 5 resource units per item on SharePoint, while the facet comes with delta pages.
    shared = item.get("shared") or {}
    return {
        "drive_id": drive_id,
        "item_id": item["id"],
        "change": change,
        "captured_at": now_utc(),
        "run_id": run_id,
        "deleted_at": None,
        "site_id": site_id,
        "parent_id": parent.get("id"),
        "name": item.get("name"),
        "path": path,
        "is_folder": is_folder(item),
        "size": content.size if content is not None else item.get("size"),
        "mime_type": file_facet.get("mimeType"),
        "created_at": parse_graph_time(item.get("createdDateTime")),
        "modified_at": parse_graph_time(item.get("lastModifiedDateTime")),
        "created_by": _identity_name(item.get("createdBy")),
        "modified_by": _identity_name(item.get("lastModifiedBy")),
        "etag": item.get("eTag"),
        "ctag": item.get("cTag"),
        "quickxor_hash": quickxor_of(item),
        "content_sha256": content.sha256 if content is not None else None,
        "content_inline": content.inline if content is not None else None,
        "package_type": package.get("type") if package else None,
        "web_url": item.get("webUrl"),
        "shared_scope": shared.get("scope"),
        "shared_by": _identity_name(shared.get("sharedBy")),
        "shared_at": parse_graph_time(shared.get("sharedDateTime")),
    }


def deletion_row(
    *,
    drive_id: str,
    site_id: str | None,
    item_id: str,
    parent_id: str | None,
    name: str | None,
    path: str | None,
    folder: bool | None,
    run_id: str,
) -> dict[str, Any]:
    """Build the version that records when Graph reported an item gone.

    It carries the identity and last known place only; the views join it to the last
    captured version.
    """
    deleted_at = now_utc()
    return {
        "drive_id": drive_id,
        "item_id": item_id,
        "change": "deleted",
        "captured_at": deleted_at,
        "run_id": run_id,
        "deleted_at": deleted_at,
        "site_id": site_id,
        "parent_id": parent_id,
        "name": name,
        "path": path,
        "is_folder": folder,
    }
