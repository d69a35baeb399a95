"""Drive enumeration: OneDrives of mailbox users and site libraries, with fallbacks."""

from __future__ import annotations

import asyncio

import httpx

from m365lake.config import GraphSettings
from m365lake.graph import GraphClient
from m365lake.sources.drive_list import Drive, Site, list_drives
from tests.unit.drive_fake import GRAPH, FakeTokens

SITE = "contoso.sharepoint.com,1111,2222"
PERSONAL = "contoso-my.sharepoint.com,3333,4444"


def make_handler(*, all_sites_status: int) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1.0")
        if path == "/users":
            users = [
                {"id": "u1", "userPrincipalName": "adele@contoso.example", "mail": "adele@x"},
                {"id": "u2", "userPrincipalName": "nodrive@contoso.example", "mail": "n@x"},
                {"id": "u3", "userPrincipalName": "nomail@contoso.example"},
            ]
            return httpx.Response(200, json={"value": users})
        if path == "/users/u1/drive":
            return httpx.Response(200, json={"id": "b!one", "driveType": "business"})
        if path.startswith("/users/"):
            return httpx.Response(404, json={"error": {"code": "itemNotFound"}})
        if path == "/sites/getAllSites":
            if all_sites_status != 200:
                return httpx.Response(all_sites_status, json={"error": {"code": "invalidRequest"}})
            return httpx.Response(200, json={"value": [{"id": SITE, "name": "legal"}]})
        if path == "/sites" and request.url.params.get("search") == "*":
            sites = [{"id": SITE, "name": "legal"}, {"id": PERSONAL, "name": "adele"}]
            return httpx.Response(200, json={"value": sites})
        if path == f"/sites/{SITE}/drives":
            drive = {"id": "b!lib", "driveType": "documentLibrary", "name": "Documents"}
            return httpx.Response(200, json={"value": [drive]})
        if path == f"/sites/{PERSONAL}/drives":
            return httpx.Response(200, json={"value": [{"id": "b!one", "driveType": "business"}]})
        return httpx.Response(404, json={"error": {"code": "itemNotFound"}})

    return httpx.MockTransport(handler)


def enumerate_drives(all_sites_status: int) -> tuple[list[Drive], list[Site]]:
    settings = GraphSettings(tenant_id="t", client_id="c", client_secret="s", graph_url=GRAPH)

    async def run() -> tuple[list[Drive], list[Site]]:
        transport = make_handler(all_sites_status=all_sites_status)
        async with GraphClient(settings, transport=transport, token_provider=FakeTokens()) as graph:
            return await list_drives(graph)

    return asyncio.run(run())


def test_list_drives_users_and_sites() -> None:
    drives, sites = enumerate_drives(200)

    assert [(d.drive_id, d.owner_kind, d.owner_id) for d in drives] == [
        ("b!one", "user", "u1"),
        ("b!lib", "site", SITE),
    ]
    assert [site.site_id for site in sites] == [SITE]
    assert drives[1].site_id == SITE


def test_list_drives_falls_back_to_search() -> None:
    drives, sites = enumerate_drives(400)

    assert [site.site_id for site in sites] == sorted([SITE, PERSONAL])
    assert [d.drive_id for d in drives] == ["b!one", "b!lib"]
