"""Graph JSON for sites, drives, driveItems and driveItemVersions (OneDrive for Business shapes)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from m365lake.emulator.drives import DriveInfo, DriveTombstone, DriveVersion, ItemInfo, SiteInfo
from m365lake.emulator.model import Tenant
from m365lake.emulator.serialize import timestamp

QUOTA_TOTAL_BYTES = 1024**4

ITEM_PROPERTIES = frozenset(
    (
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
        "fileSystemInfo",
        "deleted",
        "root",
        "package",
        "malware",
        "shared",
    )
)


def drive_type(info: DriveInfo) -> str:
    return "business" if info.kind == "onedrive" else "documentLibrary"


def site_json(info: SiteInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "displayName": info.display_name,
        "webUrl": info.web_url,
        "createdDateTime": timestamp(info.created_at),
        "lastModifiedDateTime": timestamp(info.created_at),
        "description": "",
        "root": {},
        "siteCollection": {"hostname": info.hostname, "dataLocationCode": "EUR"},
    }


def drive_json(tenant: Tenant, info: DriveInfo) -> dict[str, Any]:
    owner = (
        tenant.user_identity(info.owner_user_id)
        if info.kind == "onedrive"
        else {"user": {"displayName": "System Account"}}
    )
    return {
        "createdDateTime": timestamp(info.created_at),
        "description": "",
        "id": info.id,
        "lastModifiedDateTime": timestamp(info.created_at),
        "name": "OneDrive" if info.kind == "onedrive" else info.library,
        "webUrl": info.web_url,
        "driveType": drive_type(info),
        "createdBy": {"user": {"displayName": "System Account"}},
        "owner": owner,
        # NOTE: fileCount is documented in the OneDrive API reference ("not available on
        # Personal OneDrive") but not on Graph's v1.0 quota page. Whether it counts the
        # files inside OneNote packages or in the recycle bin is not documented; here it
        # counts neither.
        "quota": {
            "deleted": 0,
            "fileCount": tenant.drive_file_count(info.id),
            "remaining": QUOTA_TOTAL_BYTES - info.used_bytes,
            "state": "normal",
            "total": QUOTA_TOTAL_BYTES,
            "used": info.used_bytes,
        },
    }


def etag(info: ItemInfo) -> str:
    return f'"{{{info.guid}}},{info.etag_version}"'


def ctag(info: ItemInfo) -> str:
    return f'"c:{{{info.guid}}},{info.content_version}"'


def item_path(info: DriveInfo, names: tuple[str, ...]) -> str:
    """Return the percent-encoded ``parentReference.path`` of a folder at ``names``."""
    encoded = "".join("/" + quote(name, safe="") for name in names)
    return f"/drives/{info.id}/root:{encoded}"


def item_json(
    tenant: Tenant,
    request: Request,
    drive: DriveInfo,
    info: ItemInfo,
    *,
    in_delta: bool = False,
) -> dict[str, Any]:
    """Return a driveItem; ``in_delta`` drops ``parentReference.path`` and files' ``cTag``.

    OneDrive for Business leaves ``cTag`` out of delta results for created and modified
    items, and delta never carries ``path``.
    """
    body: dict[str, Any] = {}
    if not info.is_folder and info.package_type is None and info.malware is None:
        downloads = request.app.state.downloads
        body["@microsoft.graph.downloadUrl"] = downloads.url(
            request, drive.id, info.id, info.content_version
        )
    body["createdDateTime"] = timestamp(info.created_at)
    body["eTag"] = etag(info)
    body["id"] = info.id
    body["lastModifiedDateTime"] = timestamp(info.modified_at)
    body["name"] = info.name
    encoded_path = "/".join(quote(name) for name in info.path)
    body["webUrl"] = f"{drive.web_url}/{encoded_path}" if info.path else drive.web_url
    if not info.is_folder and not in_delta:
        body["cTag"] = ctag(info)
    body["size"] = info.size
    body["createdBy"] = tenant.user_identity(info.created_by)
    body["lastModifiedBy"] = tenant.user_identity(info.modified_by)
    parent: dict[str, Any] = {"driveType": drive_type(drive), "driveId": drive.id}
    if info.parent_id is not None:
        parent["id"] = info.parent_id
        if not in_delta:
            parent["name"] = info.path[-2] if len(info.path) > 1 else "root"
            parent["path"] = item_path(drive, info.path[:-1])
    if drive.site_id is not None:
        parent["siteId"] = drive.site_id
    body["parentReference"] = parent
    if info.package_type is not None:
        body["package"] = {"type": info.package_type}
    elif info.is_folder:
        body["folder"] = {"childCount": info.child_count}
    else:
        body["file"] = {"mimeType": info.mime_type, "hashes": {"quickXorHash": info.quick_xor}}
    body["fileSystemInfo"] = {
        "createdDateTime": timestamp(info.created_at),
        "lastModifiedDateTime": timestamp(info.modified_at),
    }
    if info.is_root:
        body["root"] = {}
    if info.malware is not None:
        body["malware"] = {"description": info.malware}
    if info.sharing is not None:
        # NOTE: whether OneDrive for Business delta carries the facet without $select was
        # not checked against a real tenant; the backup selects it explicitly.
        body["shared"] = {
            "owner": tenant.user_identity(drive.owner_user_id),
            "scope": info.sharing.scope,
            "sharedBy": tenant.user_identity(info.sharing.shared_by),
            "sharedDateTime": timestamp(info.sharing.shared_at),
        }
    return body


def tombstone_json(drive: DriveInfo, tombstone: DriveTombstone) -> dict[str, Any]:
    """Return a deleted item as ODfB delta sends it: no ``name``, no ``cTag``."""
    parent: dict[str, Any] = {"driveType": drive_type(drive), "driveId": drive.id}
    if tombstone.parent_id is not None:
        parent["id"] = tombstone.parent_id
    if drive.site_id is not None:
        parent["siteId"] = drive.site_id
    body: dict[str, Any] = {
        "id": tombstone.id,
        "lastModifiedDateTime": timestamp(tombstone.deleted_at),
        "parentReference": parent,
        "deleted": {"state": "deleted"},
    }
    body["folder" if tombstone.is_folder else "file"] = {}
    return body


def version_json(tenant: Tenant, version: DriveVersion) -> dict[str, Any]:
    return {
        "id": version.label,
        "lastModifiedDateTime": timestamp(version.modified_at),
        "size": len(version.content),
        "lastModifiedBy": tenant.user_identity(version.modified_by),
    }


def select_item(body: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Apply ``$select``: ``id`` and the download URL annotation always stay."""
    if select is None:
        return body
    kept: dict[str, Any] = {
        key: body[key] for key in ("@microsoft.graph.downloadUrl", "id") if key in body
    }
    for name in select:
        if name in body:
            kept[name] = body[name]
    return kept
