"""Enumerate the tenant's drives: users' OneDrives and SharePoint document libraries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from m365lake.errors import GraphRequestError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.sources.mailboxes import Mailbox, list_users

log = logging.getLogger(__name__)

DRIVE_SELECT = "id,driveType,name,owner,webUrl,sharePointIds"
SITE_SELECT = "id,name,displayName,webUrl"


@dataclass(frozen=True)
class Site:
    """A SharePoint site; ``site_id`` is Graph's ``{hostname},{siteGuid},{webGuid}``."""

    site_id: str
    name: str | None = None
    display_name: str | None = None
    web_url: str | None = None

    @classmethod
    def from_graph(cls, site: dict[str, Any]) -> Site:
        return cls(
            site_id=site["id"],
            name=site.get("name"),
            display_name=site.get("displayName"),
            web_url=site.get("webUrl"),
        )

    def row(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "name": self.name,
            "display_name": self.display_name,
            "web_url": self.web_url,
        }


@dataclass(frozen=True)
class Drive:
    """A drive to archive: a user's OneDrive (``owner_kind='user'``) or a site library."""

    drive_id: str
    drive_type: str | None
    name: str | None
    owner_kind: str
    """``user`` or ``site``."""
    owner_id: str
    owner_name: str | None = None
    site_id: str | None = None
    web_url: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "drive_id": self.drive_id,
            "drive_type": self.drive_type,
            "name": self.name,
            "owner_kind": self.owner_kind,
            "owner_id": self.owner_id,
            "owner_name": self.owner_name,
            "site_id": self.site_id,
            "web_url": self.web_url,
        }


def _site_id_of(drive: dict[str, Any]) -> str | None:
    ids = drive.get("sharePointIds") or drive.get("sharepointIds") or {}
    value = ids.get("siteId") if isinstance(ids, dict) else None
    return str(value) if value else None


async def get_user_drive(graph: GraphClient, user: Mailbox) -> Drive | None:
    """Return the OneDrive of ``user``, or None when the user has none (404)."""
    try:
        drive = await graph.get_json(
            f"/users/{user.mailbox_id}/drive", params={"$select": DRIVE_SELECT}
        )
    except ItemNotFoundError:
        # Unlicensed users and users who never opened OneDrive have no drive.
        log.info("user %s has no OneDrive; skipping it", user.user_principal_name)
        return None
    return Drive(
        drive_id=drive["id"],
        drive_type=drive.get("driveType"),
        name=drive.get("name"),
        owner_kind="user",
        owner_id=user.mailbox_id,
        owner_name=user.user_principal_name,
        site_id=_site_id_of(drive),
        web_url=drive.get("webUrl"),
    )


async def list_sites(graph: GraphClient) -> list[Site]:
    """Return every site collection, from ``/sites/getAllSites`` or ``/sites?search=*``.

    ``getAllSites`` is application-only and covers all geographies. Where it is not
    available (older clouds, some proxies) the search endpoint lists the sites instead.
    """
    params = {"$select": SITE_SELECT}
    sites: dict[str, Site] = {}
    try:
        async for page in graph.iter_pages("/sites/getAllSites", params=params):
            for site in page.get("value", []):
                sites[site["id"]] = Site.from_graph(site)
    except (ItemNotFoundError, GraphRequestError) as error:
        log.info("GET /sites/getAllSites failed (%s); listing sites with search=*", error)
        sites.clear()
        async for page in graph.iter_pages("/sites", params={**params, "search": "*"}):
            for site in page.get("value", []):
                sites[site["id"]] = Site.from_graph(site)
    return sorted(sites.values(), key=lambda site: site.site_id)


async def list_site_drives(graph: GraphClient, site: Site) -> list[Drive]:
    drives = []
    async for page in graph.iter_pages(
        f"/sites/{site.site_id}/drives", params={"$select": DRIVE_SELECT}
    ):
        for drive in page.get("value", []):
            drives.append(
                Drive(
                    drive_id=drive["id"],
                    drive_type=drive.get("driveType"),
                    name=drive.get("name"),
                    owner_kind="site",
                    owner_id=site.site_id,
                    owner_name=site.display_name or site.name,
                    site_id=site.site_id,
                    web_url=drive.get("webUrl"),
                )
            )
    return drives


async def list_drives(graph: GraphClient) -> tuple[list[Drive], list[Site]]:
    """Return every user's OneDrive and every site library, with the sites.

    Every user is asked, not only mail-enabled ones, because OneDrive-only licences exist.
    """
    drives: list[Drive] = []
    for user in await list_users(graph):
        drive = await get_user_drive(graph, user)
        if drive is not None:
            drives.append(drive)
    sites = await list_sites(graph)
    seen = {drive.drive_id for drive in drives}
    for site in sites:
        # getAllSites can list OneDrive (personal) sites too; their drive is already in
        # the list as the user's.
        for drive in await list_site_drives(graph, site):
            if drive.drive_id not in seen:
                seen.add(drive.drive_id)
                drives.append(drive)
    return drives, sites
